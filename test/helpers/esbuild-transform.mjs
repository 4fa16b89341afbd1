// Jest's TypeScript transform: esbuild strips the types of each file on its
// own (as tsconfig.json's isolatedModules already requires), keeping ES
// modules. The type check is `npm run typecheck`'s; a test run needs only
// the JavaScript, and esbuild makes it without loading the TypeScript
// compiler into every Jest worker.
import { createHash } from 'node:crypto';
import { transformSync, version } from 'esbuild';

// What tsconfig.json says that changes the emitted JavaScript.
const tsconfigRaw = { compilerOptions: { target: 'ES2022', verbatimModuleSyntax: true, useDefineForClassFields: true } };

export default {
  getCacheKey(source, path) {
    return createHash('sha256').update(`${version}\0${JSON.stringify(tsconfigRaw)}\0${path}\0${source}`).digest('hex');
  },
  process(source, path) {
    const { code, map } = transformSync(source, { loader: 'ts', format: 'esm', target: 'es2022', sourcemap: 'external', sourcefile: path, tsconfigRaw });
    return { code, map };
  },
};

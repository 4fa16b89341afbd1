// Jest for TypeScript tests in an ES module project ("type": "module"), with
// ts-jest. Run: node --experimental-vm-modules node_modules/jest/bin/jest.js
// (CommonJS projects need nothing of this: the package works in Jest's
// default mode too, with `preset: 'ts-jest'` or plain JavaScript.)
import { createDefaultEsmPreset } from 'ts-jest';

/** @type {import('jest').Config} */
export default {
  ...createDefaultEsmPreset({ tsconfig: new URL('../tsconfig.json', import.meta.url).pathname }),
  testEnvironment: 'node',
  // Relative imports are written with .js (as Node wants); Jest finds the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

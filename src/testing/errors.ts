/**
 * An error FakeArvados answers with: the HTTP status and the messages of the
 * Rails error envelope (`{"errors": [...], "error_token": ...}`).
 *
 * @module
 */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly messages: string[];

  constructor(status: number, ...messages: string[]) {
    super(messages.join('; '));
    this.status = status;
    this.messages = messages;
  }
}

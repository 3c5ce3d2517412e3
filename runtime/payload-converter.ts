import { DefaultPayloadConverter, type Payload, type PayloadConverter } from '@temporalio/common';
import { UNDECODABLE_PAYLOAD } from '../contracts/issues';

/**
 * The governor's payload converter (loaded inside the workflow sandbox through `payloadConverterPath`).
 * Temporal's default converter, except that a payload it cannot decode (not JSON, an unknown encoding,
 * a protobuf payload from another SDK) decodes to `{ [UNDECODABLE_PAYLOAD]: "<why>" }` instead of
 * throwing. A throw there fails the workflow task before any workflow code runs, and the task is retried
 * forever: one junk start or signal would wedge a chain or a coordinator. With this, the workflow's own
 * validation sees an invalid value and refuses it like any other (Rejected, an ignored or rejected
 * signal), naming the payload.
 */
export { UNDECODABLE_PAYLOAD };

class GovernorPayloadConverter implements PayloadConverter {
  private readonly inner = new DefaultPayloadConverter();

  toPayload<T>(value: T): Payload {
    return this.inner.toPayload(value);
  }

  fromPayload<T>(payload: Payload): T {
    try {
      return this.inner.fromPayload<T>(payload);
    } catch (err) {
      // Never the payload's text (a JSON error quotes it): only what kind of failure it was.
      const message = err instanceof Error ? err.message : '';
      const why =
        err instanceof SyntaxError
          ? 'not valid JSON'
          : /^Unknown encoding: [\w./+-]{0,64}$/.test(message)
            ? message
            : 'undecodable payload';
      return { [UNDECODABLE_PAYLOAD]: why } as T;
    }
  }
}

export const payloadConverter = new GovernorPayloadConverter();

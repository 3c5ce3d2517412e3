import { DefaultFailureConverter } from '@temporalio/common';

/**
 * The failure converter of a governor with payload encryption on (`failureConverterPath` of the data
 * converter, loaded by the worker, by the workflow bundle and by clients): a failure's message and
 * stack trace travel in its `encodedAttributes` payload, which the payload codec encrypts; the
 * failure itself only says "Encoded failure". Imports only @temporalio/common: safe in the sandbox.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

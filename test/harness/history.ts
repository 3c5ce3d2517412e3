import { temporal } from '@temporalio/proto';

/**
 * Parses a history saved with JSON.stringify (protobufjs' proto3 JSON) back into a History message.
 * (`historyFromJSON` of @temporalio/common 1.24.0 fails with "type must be a Type": it pairs its own
 * protobufjs 8 with the proto package's protobufjs 7 types.)
 */
export function historyFromSavedJson(json: unknown): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
}

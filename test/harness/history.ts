import { temporal } from '@temporalio/proto';

/**
 * Parses a history saved with JSON.stringify (protobufjs' proto3 JSON) back into a History message.
 * (`historyFromJSON` of @temporalio/common 1.24.0 fails with "type must be a Type": it pairs its own
 * protobufjs 8 with the proto package's protobufjs 7 types.)
 */
export function historyFromSavedJson(json: unknown): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
}

/**
 * The workflow id a saved chain history ran under: its input's `chainId` (the governed chain refuses to
 * run under any other id, so replays must use it).
 */
export function chainIdOfSavedJson(json: unknown): string {
  const events =
    (
      json as {
        events?: { workflowExecutionStartedEventAttributes?: { input?: { payloads?: { data?: string }[] } } }[];
      }
    ).events ?? [];
  const data = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
  if (!data) throw new Error('saved history has no workflow input');
  const input = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { chainId?: unknown };
  if (typeof input.chainId !== 'string') throw new Error('saved history input has no chainId');
  return input.chainId;
}

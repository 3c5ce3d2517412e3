import { ApplicationFailure, condition, defineQuery, setHandler } from '@temporalio/workflow';
import { appendCheckpointUpdate, type AppendCheckpointInput } from '../../contracts/transparency';

/** What the pre-batch log was asked to append, in order. */
export const appendedQuery = defineQuery<AppendCheckpointInput[]>('appended');

/** The anchor this fake log answers for `chainId` (a real log's shape; the test compares it whole). */
export function cannedAnchor(chainId: string) {
  return {
    log: 'pre-batch-log',
    index: chainId.length,
    leaf: { chainId },
    inclusion: [],
    treeHead: { size: 1, rootHash: '0'.repeat(64) },
  };
}

/**
 * A transparency log as its workers ran before the `appendCheckpoints` batch update (a rolling upgrade): only
 * `appendCheckpoint`, whose strict input knew no `receipt`. The chain id `refused` is refused as a real log
 * refuses a chain that did not close with a checkpoint. Bundled only by the rolling-upgrade test.
 */
export async function transparencyLogWorkflow(): Promise<void> {
  const appended: AppendCheckpointInput[] = [];
  setHandler(appendedQuery, () => appended);
  setHandler(appendCheckpointUpdate, (entry) => {
    if ('receipt' in entry)
      throw ApplicationFailure.nonRetryable('receipt: unrecognized key', 'GOVERNOR_INVALID_INPUT');
    appended.push(entry);
    if (entry.chainId === 'refused') {
      throw ApplicationFailure.nonRetryable(
        'chain refused has not closed with a checkpoint',
        'GOVERNOR_ANCHOR_REFUSED',
      );
    }
    return cannedAnchor(entry.chainId) as never;
  });
  await condition(() => false);
}

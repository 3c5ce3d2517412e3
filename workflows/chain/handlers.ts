import { setHandler } from '@temporalio/workflow';
import { slotVerdictSignal } from '../../contracts/slot-verdict';
import {
  approveSignal,
  denySignal,
  refreshCredentialSignal,
  refreshCredentialUpdate,
  revokeSignal,
  statusQuery,
  submitApprovalUpdate,
} from '../../contracts/messages';
import { onVoteSignal, submitApproval, validateSubmission } from './approval';
import { onSlotVerdict } from './coordination';
import { validateRefresh, type ChainRun } from './run';

/**
 * The messages every governed run answers, chains and agent sessions alike: status, credential refresh,
 * votes, slot verdicts and revocation. Handlers only record what arrived; the run acts on it. Set in
 * this order (signals that arrived before are delivered in the order their handlers are set).
 */
export function setChainHandlers(run: ChainRun): void {
  setHandler(statusQuery, () => run.state);
  setHandler(refreshCredentialSignal, (refresh) => run.onRefreshSignal(refresh));
  setHandler(refreshCredentialUpdate, (refresh) => run.refresh(refresh), { validator: validateRefresh });
  setHandler(approveSignal, (submission) => onVoteSignal(run, 'approve-signal', submission));
  setHandler(denySignal, (submission) => onVoteSignal(run, 'deny-signal', submission));
  setHandler(submitApprovalUpdate, (submission) => submitApproval(run, submission), {
    validator: (submission) => validateSubmission(run, submission),
  });
  setHandler(slotVerdictSignal, (verdict) => onSlotVerdict(run, verdict));
  setHandler(revokeSignal, (revoke) => run.revoke(revoke));
}

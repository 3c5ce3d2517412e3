import type { ApprovalState, VoteVerdict } from '../contracts/approval';

/** A vote waiting to be verified, in arrival order. */
export interface Submission {
  seq: number;
  via: VoteVerdict['via'];
  token: string;
}

/**
 * Votes arrive by signal or update at any time; the chain verifies them one by one, in arrival
 * order, while a step awaits approval. Deterministic: arrival order is history order.
 */
export class ApprovalQueue {
  private nextSeq = 1;
  readonly pending: Submission[] = [];
  /** Verdicts by submission sequence number (update handlers wait for theirs). */
  readonly verdicts = new Map<number, VoteVerdict>();
  /** The step awaiting approval now, if any. */
  current?: ApprovalState;

  /** Queues a vote; returns its sequence number. */
  enqueue(token: string, via: Submission['via']): number {
    const seq = this.nextSeq++;
    this.pending.push({ seq, via, token });
    return seq;
  }

  /** Records a verdict on the current approval (a repeat vote of the same approver counts once). */
  settle(verdict: VoteVerdict): void {
    const approval = this.current;
    if (approval && verdict.counted && verdict.decision === 'approve' && !verdict.breakGlass && verdict.approver) {
      if (approval.approvedBy.some((a) => a.approver === verdict.approver)) verdict.repeat = true;
      else approval.approvedBy.push({ approver: verdict.approver, roles: verdict.roles ?? [] });
      approval.stillNeeded = Math.max(0, approval.quorum - approval.approvedBy.length);
    }
    approval?.verdicts.push(verdict);
    this.verdicts.set(verdict.seq, verdict);
  }

  /** Ends the current approval: votes still queued are rejected so no update waits forever. */
  close(reason: string): void {
    for (const s of this.pending.splice(0)) this.verdicts.set(s.seq, { seq: s.seq, via: s.via, counted: false, reason });
    this.current = undefined;
  }
}

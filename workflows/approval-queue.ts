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
  /** Verified votes for a later step of the chain, kept until that step awaits approval. */
  private readonly deferred = new Map<string, Submission[]>();

  /**
   * True while the chain re-authorizes after a quorum: `submitApproval` callers wait so they are
   * answered with the approval's real outcome.
   */
  deciding = false;

  /** Records the verdict on a vote rejected before verification (malformed): never counted, still shown. */
  reject(via: Submission['via'], reason: string): VoteVerdict {
    const verdict: VoteVerdict = { seq: this.nextSeq++, via, counted: false, reason };
    this.current?.verdicts.push(verdict);
    this.verdicts.set(verdict.seq, verdict);
    return verdict;
  }

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

  /** Keeps a vote for a later step (it arrived before that step escalated: never lost). */
  defer(stepId: string, submission: Submission): void {
    this.deferred.set(stepId, [...(this.deferred.get(stepId) ?? []), submission]);
  }

  /** Queues the votes kept for `stepId` ahead of anything that arrives later. */
  resume(stepId: string): void {
    const kept = this.deferred.get(stepId);
    if (!kept) return;
    this.deferred.delete(stepId);
    this.pending.unshift(...kept);
  }

  /**
   * Ends the current approval. Queued updates are answered (rejected) so no caller waits forever;
   * queued signals stay queued for the next step that awaits approval (a vote is never lost).
   */
  close(reason: string): void {
    const keep = this.pending.filter((s) => s.via !== 'update');
    for (const s of this.pending)
      if (s.via === 'update') this.verdicts.set(s.seq, { seq: s.seq, via: s.via, counted: false, reason });
    this.pending.splice(0, this.pending.length, ...keep);
    this.current = undefined;
  }
}

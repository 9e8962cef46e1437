import { monotonicNow } from '../../lock-clock';

/** A command awaiting its answer: rejected with a timeout error when its deadline passes first. */
export interface CommandDeadline {
  /** Set to the command sent in its place (a script resent as EVAL); cleared once settled. */
  command: { reject(error: Error): void } | undefined;
}

interface Entry extends CommandDeadline {
  readonly at: number;
  readonly what: string;
  next: Entry | undefined;
}

/**
 * The command timeout of one connection, with one timer for all its commands instead of one per
 * command. Every command gets the same timeout, so the order they were sent in is also the order
 * of their deadlines: they wait in a list in that order, answered ones leave it from the front,
 * and the timer is set for the oldest one still waiting. At its deadline that command is rejected
 * (ioredis' `Command.reject`; a late answer is then ignored).
 */
export class CommandDeadlines {
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeout: number,
    private readonly timedOut: (what: string) => Error,
  ) {}

  /** Starts the clock of `command`, described as `what` in the timeout error. */
  add(what: string, command: { reject(error: Error): void }): CommandDeadline {
    const entry: Entry = { at: monotonicNow() + this.timeout, what, command, next: undefined };
    if (this.tail === undefined) this.head = entry;
    else this.tail.next = entry;
    this.tail = entry;
    if (this.timer === undefined) this.arm(this.timeout);
    return entry;
  }

  /** The command was answered (or failed): it no longer has a deadline. */
  settle(deadline: CommandDeadline): void {
    deadline.command = undefined;
    this.dropSettled();
  }

  /**
   * The connection is closing: the timer stops now unless a command still awaits its answer (it
   * keeps its deadline; the timer then stops by itself once the last one has settled).
   */
  close(): void {
    this.dropSettled();
    if (this.head === undefined && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private dropSettled(): void {
    let head = this.head;
    while (head !== undefined && head.command === undefined) head = head.next;
    this.head = head;
    if (head === undefined) this.tail = undefined;
  }

  private arm(delay: number): void {
    this.timer = setTimeout(this.sweep, Math.max(1, Math.ceil(delay)));
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    const now = monotonicNow();
    for (;;) {
      this.dropSettled();
      const head = this.head;
      if (head === undefined) return;
      if (head.at > now) {
        this.arm(head.at - now);
        return;
      }
      const command = head.command!;
      head.command = undefined;
      command.reject(this.timedOut(head.what));
    }
  };
}

/**
 * What every `elock` subcommand provides, and what it is given to run.
 *
 * @module
 */

/** Where a subcommand writes, and when it must stop. */
export interface CliIo {
  /** Writes `text` (ending in `\n` where it is a whole line) to standard output. */
  stdout(text: string): void;
  /** Writes `text` (ending in `\n` where it is a whole line) to standard error. */
  stderr(text: string): void;
  /**
   * Aborted when the user asks the command to stop (by default SIGINT or
   * SIGTERM; {@linkcode Subcommand.signals}); the reason is the signal's
   * name. A long-running command must watch it.
   */
  readonly signal: AbortSignal;
  /**
   * Calls `listener` with the name of each such signal that arrives from now
   * on, the first one and every later one (for a command that passes
   * signals on to a child); returns a function that stops the calls.
   */
  onSignal(listener: (signal: string) => void): () => void;
  /** Whether standard error is a terminal, where a person reads it (default: no). */
  readonly stderrIsTerminal?: boolean;
}

/** Runs a parsed subcommand; resolves to the process exit code. */
export type RunCommand = (io: CliIo) => Promise<number>;

/** One entry of the CLI's table of subcommands. */
export interface Subcommand {
  /** The word that selects it: `elock NAME ...`. */
  readonly name: string;
  /** One line for the list of commands in `elock --help`. */
  readonly summary: string;
  /** The full text of `elock NAME --help`, ending in `\n`. */
  readonly help: string;
  /**
   * The signals that stop it (abort {@linkcode CliIo.signal}); while it runs
   * they no longer end the process. Default: SIGINT and SIGTERM.
   */
  readonly signals?: readonly string[];
  /**
   * Parses the arguments that follow the subcommand's name.
   *
   * @returns `"help"` if help was asked for, else the command ready to run
   * @throws {UsageError} when the arguments are wrong
   */
  parse(args: readonly string[]): "help" | RunCommand;
}

/**
 * Wrong command-line usage: the CLI prints the message with a hint to run
 * `--help` and exits with code 2.
 *
 * @example
 * ```ts
 * throw new UsageError(`unknown option "--bogus"`);
 * ```
 */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message what is wrong, e.g. `option --port needs a value`
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

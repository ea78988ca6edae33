/**
 * `elock unlock --force KEY`: an operator frees a key whoever holds it, with
 * the bundled server's `force_unlock KEY` (a server started with `--admin`).
 *
 * A plain `elock unlock KEY` is refused: a lock belongs to the session that
 * took it and goes when that session ends, so a command-line process (a
 * session of its own) has nothing to unlock; `elock lock` releases its lock
 * itself when its command ends.
 *
 * @module
 */

import { encodeKey, forceUnlockCommand } from "../protocol/commands.ts";
import type { Reply } from "../protocol/reply_reader.ts";
import { parseFlags, quote } from "./flags.ts";
import {
  ADDRESS_FLAGS,
  ADDRESS_HELP,
  addressText,
  connectTo,
  explainError,
  serverAddress,
} from "./server_address.ts";
import { type Subcommand, UsageError } from "./subcommand.ts";

const HELP = `Usage: elock unlock --force KEY [options]

Frees KEY whoever holds it (an operator's command, for a lock whose holder
hangs): its holders lose it, and its next waiter gets it. Needs the bundled
eLock server started with --admin (the force_unlock command, which it logs);
other servers have no such command.

The holders are not told (the protocol has no way to): a holder learns it
when it next unlocks KEY (refused once another session holds KEY) or asks
its fencing token, so the resource a lock guards should check fencing tokens
(acquire(KEY, { fence: true })) where a forced unlock can happen.

Without --force there is nothing to do: a lock belongs to the session that
took it, and goes when that session unlocks it or ends.

Options:
  --force                free KEY whoever holds it (required)
  --sha1                 KEY is a name whose SHA-1 (hex) is the key, as the PHP
                         client and elock lock --sha1 send it
${ADDRESS_HELP}
  -h, --help             show this help

Exit codes: 0 KEY was freed, 1 KEY was not locked, the server refused (no
--admin) or has no force_unlock, or could not be reached; 2 wrong usage.
`;

const FLAGS = {
  ...ADDRESS_FLAGS,
  force: { type: "boolean" },
  sha1: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The `unlock` entry of the CLI's table of subcommands. */
export const unlockCommand: Subcommand = {
  name: "unlock",
  summary: "free a key whoever holds it (--force; server --admin)",
  help: HELP,
  parse(args) {
    const { values, positionals } = parseFlags(args, FLAGS);
    if (values.help) return "help";
    const [key, extra] = positionals;
    if (key === undefined) throw new UsageError("missing KEY");
    if (extra !== undefined) throw new UsageError(`unexpected argument ${quote(extra)}`);
    if (!values.force) {
      throw new UsageError(
        "unlock needs --force: a lock belongs to the session that took it, and this " +
          "command's session holds none; --force KEY frees KEY whoever holds it " +
          "(a server started with --admin)",
      );
    }
    const address = serverAddress(values);
    return async (io) => {
      const wire = values.sha1 ? await encodeKey(key, "sha1") : key;
      const command = new TextDecoder().decode(forceUnlockCommand(wire)).trimEnd();
      await using client = await connectTo(address, io.signal);
      let reply: Reply;
      try {
        reply = await client.command(command);
      } catch (error) {
        throw explainError(error, address);
      }
      const shown = values.sha1 ? `${quote(key)} (sha1 ${wire})` : quote(key);
      const line = `${reply.code} ${reply.message}`.trimEnd();
      switch (reply.code) {
        case 200:
          io.stdout(`elock unlock: freed ${shown}: ${reply.message}\n`);
          return 0;
        case 404:
          io.stderr(`elock unlock: ${shown} was not locked\n`);
          return 1;
        case 403:
          throw new Error(`the server at ${addressText(address)} refused: ${line}`);
        default:
          throw new Error(
            `the server at ${addressText(address)} has no force_unlock command (${line}); ` +
              `only the bundled eLock server (elock server --admin) has`,
          );
      }
    };
  },
};

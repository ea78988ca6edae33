/**
 * `elock stats`: prints the server's counters.
 *
 * @module
 */

import { noPositionals, parseFlags } from "./flags.ts";
import {
  ADDRESS_FLAGS,
  ADDRESS_HELP,
  connectTo,
  explainError,
  serverAddress,
} from "./server_address.ts";
import type { Subcommand } from "./subcommand.ts";

const HELP = `Usage: elock stats [options]

Prints the server's counters: clients and monitoring (sessions, connected or
waiting out their release timeout) and locks (locked keys).

Options:
${ADDRESS_HELP}
  --json                 print them as one JSON object
  -h, --help             show this help

Exit codes: 0 printed, 1 the server could not be reached, did not answer within
--connect-timeout, is not an eLock server, or failed; 2 wrong usage.
`;

const FLAGS = {
  ...ADDRESS_FLAGS,
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The `stats` entry of the CLI's table of subcommands. */
export const statsCommand: Subcommand = {
  name: "stats",
  summary: "print the server's counters",
  help: HELP,
  parse(args) {
    const { values, positionals } = parseFlags(args, FLAGS);
    if (values.help) return "help";
    noPositionals(positionals);
    const address = serverAddress(values);
    return async (io) => {
      await using client = await connectTo(address, io.signal);
      let stats;
      try {
        stats = await client.stats();
      } catch (error) {
        throw explainError(error, address);
      }
      if (values.json) {
        io.stdout(`${JSON.stringify(stats)}\n`);
      } else {
        const rows = Object.entries(stats);
        const width = Math.max(...rows.map(([name]) => name.length)) + 2;
        io.stdout(rows.map(([name, n]) => `${name.padEnd(width)}${n}\n`).join(""));
      }
      return 0;
    };
  },
};

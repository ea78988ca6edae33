// Node, CommonJS: require() loads the package (an ES module) on Node
// 20.19+ and 22.12+. `npm install @x/elock`, then
//   ELOCK_PORT=11400 node node_cjs.cjs
"use strict";
const process = require("node:process");
const { ELockClient } = require("@x/elock");

async function main() {
  const client = await ELockClient.connect({
    host: process.env.ELOCK_HOST ?? "127.0.0.1",
    port: Number(process.env.ELOCK_PORT ?? 11400),
  });
  try {
    if (await client.lock("invoice-42", { timeout: 5000 })) {
      try {
        console.log("invoice-42 locked from CommonJS");
      } finally {
        await client.unlock("invoice-42");
      }
    } else {
      console.log("invoice-42 stayed busy for 5 s");
    }
  } finally {
    await client.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});

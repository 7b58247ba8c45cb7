// Parses docs/api/asyncapi.json (what /api/asyncapi.json serves; a Rust test keeps the file
// equal to the code's document) with the AsyncAPI Initiative's parser, and fails on any error or
// warning it reports: the document must be valid AsyncAPI, not only JSON our own tests like.
import { Parser } from "@asyncapi/parser";
import { readFileSync } from "node:fs";

const file = new URL("../../docs/api/asyncapi.json", import.meta.url);
const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"));
// Severity: 0 error, 1 warning, 2 information, 3 hint.
const problems = diagnostics.filter((d) => d.severity <= 1);
for (const d of diagnostics) console.log(`${["error", "warning", "info", "hint"][d.severity]} ${d.code}: ${d.message} at ${d.path.join(".")}`);
if (!document || problems.length > 0) {
  console.error(`docs/api/asyncapi.json: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`docs/api/asyncapi.json is valid AsyncAPI ${document.version()}: ${document.messages().length} messages`);

// Builds the console into crates/admin/console/ (index.html, app.js, app.css), the files
// the strata binary embeds. `--check` builds in memory and fails if the committed files
// differ from what the sources give (CI runs it, so the two never drift apart).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "crates", "admin", "console");
const check = process.argv.includes("--check");

const result = await build({
  entryPoints: { app: join(here, "src", "main.jsx") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  outdir: out,
  write: false,
  logLevel: "warning",
});

const files = new Map(result.outputFiles.map((f) => [f.path.slice(out.length + 1), f.text]));
files.set("index.html", readFileSync(join(here, "src", "index.html"), "utf8"));

let stale = [];
for (const [name, text] of files) {
  const path = join(out, name);
  if (check) {
    let current = "";
    try {
      current = readFileSync(path, "utf8");
    } catch {}
    if (current !== text) stale.push(name);
  } else {
    writeFileSync(path, text);
  }
}
if (check && stale.length) {
  console.error(`console: ${stale.join(", ")} differ from what console/src builds: run (cd console && npm run build) and commit`);
  process.exit(1);
}
console.log(check ? "console: the built files are current" : `console: wrote ${[...files.keys()].join(", ")} to ${out}`);

// Collect the license of every npm package whose code esbuild put in the bundle (from its
// metafile), with the package's name and version, into one file.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [metafile, out] = process.argv.slice(2);
const inputs = Object.keys(JSON.parse(readFileSync(metafile, "utf8")).inputs);
const roots = new Set();
for (const input of inputs) {
  const match = input.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//);
  if (match) roots.add(match[1]);
}
const sections = [];
for (const root of [...roots].sort()) {
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const file = readdirSync(root).find((name) => /^(license|licence|copying)(\.|$)/i.test(name));
  if (!file) throw new Error(`${manifest.name} has no LICENSE file: add its license by hand`);
  const text = readFileSync(join(root, file), "utf8").trim();
  sections.push(`${manifest.name} ${manifest.version} (${manifest.license})\n\n${text}\n`);
}
const header =
  "The web editor's bundle (codemirror.js) holds these npm packages, built by\n" +
  "service/web/editor_bundle/build.sh. Each package's license follows its name and version.\n";
writeFileSync(out, [header, ...sections].join("\n" + "=".repeat(78) + "\n\n"));
console.log(`${sections.length} packages: ${[...roots].map((r) => r.split("node_modules/")[1]).join(", ")}`);

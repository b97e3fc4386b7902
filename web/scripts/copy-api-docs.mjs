// Copies Swagger UI's files into the static export (out/api-docs/), so the coordinator's API
// docs page (/schema/swagger) loads nothing from outside: it works offline and behind a firewall.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const dist = dirname(require.resolve("swagger-ui-dist/package.json"));
const out = join("out", "api-docs");
mkdirSync(out, { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"]) {
  copyFileSync(join(dist, file), join(out, file));
}
console.log(`API docs assets copied to ${out}`);

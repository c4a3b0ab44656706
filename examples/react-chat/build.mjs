// `npm run build`: the page and its one bundle in dist/. The page names the bundle by a
// relative path, so any static server pointed at dist/ serves the example as well.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

await rm(here("dist"), { recursive: true, force: true });
await mkdir(here("dist"));
await build({
  entryPoints: [here("src/app.jsx")],
  outfile: here("dist/app.js"),
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
await copyFile(here("index.html"), here("dist/index.html"));

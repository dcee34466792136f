// Builds the sample app the way an app developer would, from the player's packed npm tarball:
// `npm pack` player/pkg, `npm install` the tarball into a fresh app, bundle the app (the demo
// page's script, which imports "orpheus-player") with esbuild, and copy the package's assets
// next to the bundle (esbuild leaves `new URL(asset, import.meta.url)` to the app). Prints the
// app directory's JSON summary.
//
// usage: node tests/sample-app/build.mjs <work dir>

import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as esbuild from "esbuild";

const root = resolve(import.meta.dirname, "../..");
const work = resolve(process.argv[2]);
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const run = (command, args, cwd) => execFileSync(command, args, { cwd, stdio: ["ignore", "pipe", "inherit"] }).toString();

const tarball = run("npm", ["pack", join(root, "player/pkg"), "--pack-destination", work, "--silent"], work).trim();
const app = join(work, "app");
mkdirSync(app);
writeFileSync(join(app, "package.json"), JSON.stringify({ private: true, type: "module" }));
run("npm", ["install", "--no-audit", "--no-fund", "--offline", join(work, tarball)], app);

const dist = join(app, "dist");
await esbuild.build({
  entryPoints: [join(root, "player/demo/demo.js")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  outfile: join(dist, "demo.js"),
  nodePaths: [join(app, "node_modules")],
  logLevel: "warning",
});
const installed = join(app, "node_modules/orpheus-player");
for (const asset of ["orpheus_player.wasm", "orpheus_player_dsp.wasm", "worklet.js", "socket.js"]) {
  cpSync(join(installed, asset), join(dist, asset));
}
for (const page of ["index.html", "demo.css"]) cpSync(join(root, "player/demo", page), join(dist, page));

const files = Object.fromEntries(readdirSync(dist).map((f) => [f, statSync(join(dist, f)).size]));
console.log(JSON.stringify({ tarball, dist, files }));

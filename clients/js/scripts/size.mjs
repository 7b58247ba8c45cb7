// Prints the bundle's size as shipped to browsers: raw, minified, and minified + gzip (level 9).
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { transformSync } from "esbuild";

const src = readFileSync(new URL("../dist/chorus.js", import.meta.url), "utf8");
const min = transformSync(src, { minify: true, format: "esm", target: "es2020" }).code;
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`dist/chorus.js: ${kib(Buffer.byteLength(src))} raw, ${kib(Buffer.byteLength(min))} minified, ${kib(gzipSync(min, { level: 9 }).length)} min+gzip (${gzipSync(min, { level: 9 }).length} bytes)`);

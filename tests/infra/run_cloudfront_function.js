// Runs a CloudFront Function from its file: `node run_cloudfront_function.js FILE`
// reads one event (JSON) on stdin and prints handler(event) as JSON on stdout.
// The file runs in a fresh context with no require or module, as at the edge.
"use strict";
const fs = require("fs");
const vm = require("vm");

const context = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context, { filename: process.argv[2] });
if (typeof context.handler !== "function") {
    throw new Error(process.argv[2] + " defines no top-level function handler(event)");
}
const event = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(context.handler(event)));

// Runs a CloudFront Function from its file: `node run_cloudfront_function.js FILE`
// reads one event (JSON) on stdin and prints handler(event) as JSON on stdout.
// The file runs in a fresh context with no require or module, as at the edge.
//
// The raw query string: cloudfront-js-2.0 gives the request a method,
// rawQueryString(), which JSON cannot carry. An event whose request has the
// field `rawQueryString` gets that method in its place before the handler runs:
//   - a string: the method returns it (the query after "?", "" for a "?" with
//     nothing after it);
//   - null: the method returns undefined (the URL had no "?"), as CloudFront's.
// Without the field the request has no such method. A request the handler
// returns is printed with the field as it came in.
"use strict";
const fs = require("fs");
const vm = require("vm");

const context = vm.createContext({});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context, { filename: process.argv[2] });
if (typeof context.handler !== "function") {
    throw new Error(process.argv[2] + " defines no top-level function handler(event)");
}
const event = JSON.parse(fs.readFileSync(0, "utf8"));
const request = event.request;
const hasRaw = request && Object.prototype.hasOwnProperty.call(request, "rawQueryString");
const raw = hasRaw ? request.rawQueryString : undefined;
if (hasRaw) {
    if (raw !== null && typeof raw !== "string") {
        throw new Error("request.rawQueryString must be a string or null (no \"?\"), not " + JSON.stringify(raw));
    }
    request.rawQueryString = function () {
        return raw === null ? undefined : raw;
    };
}
const answer = context.handler(event);
// The method back to the field it came from, so that a request passed on
// prints as it was given.
const printed = JSON.stringify(answer, function (key, value) {
    return hasRaw && this === request && key === "rawQueryString" ? raw : value;
});
process.stdout.write(printed);

// ----------------------------------------------------------------------------
// | The old-domain redirect: a CloudFront Function on viewer request         |
// ----------------------------------------------------------------------------
//
// Runtime cloudfront-js-2.0. A request whose Host is one of OLD_HOSTS gets a
// redirect to the same path and query on NEW_HOST, over HTTPS (the query as
// the viewer sent it, from request.rawQueryString(); see locationQuery):
//   - 301 for GET and HEAD;
//   - 308 for every other method, which keeps the method and the body, so a
//     POST is never replayed as a GET (a 301 allows that, RFC 9110 15.4.2).
// Any other request (the new host, an unknown host, no Host) is returned
// unchanged and goes on to the origin.
//
// The names: the deploy replaces the JSON value of the two `var` lines below
// with the stage's names (JSON, one line each, nothing else on the line);
// the values here are the examples the tests run with. See README.md.
//
// CloudFront Functions is not Node: no modules, no require, a top-level
// function named `handler`. This file stays plain ES5 so that it also runs
// unchanged in node for the tests.

var OLD_HOSTS = ["hosp.old.example"];
var NEW_HOST = "hosp.new.example";

// Short enough that a rolled-back move stops redirecting within the hour;
// without it a browser keeps a 301 for as long as it likes.
var REDIRECT_MAX_AGE_SECONDS = 3600;

function handler(event) {
    var request = event.request;
    if (!isOldHost(request.headers && request.headers.host)) {
        return request;
    }
    var safe = request.method === "GET" || request.method === "HEAD";
    return {
        statusCode: safe ? 301 : 308,
        statusDescription: safe ? "Moved Permanently" : "Permanent Redirect",
        headers: {
            location: { value: "https://" + NEW_HOST + uriSafe(request.uri) + locationQuery(request) },
            "cache-control": { value: "max-age=" + REDIRECT_MAX_AGE_SECONDS },
        },
    };
}

// The Host header's name, compared without case, port or a trailing dot.
function isOldHost(header) {
    if (!header || typeof header.value !== "string") {
        return false;
    }
    var name = header.value
        .toLowerCase()
        .replace(/:\d*$/, "")
        .replace(/\.$/, "");
    for (var i = 0; i < OLD_HOSTS.length; i++) {
        if (OLD_HOSTS[i].toLowerCase() === name) {
            return true;
        }
    }
    return false;
}

// The Location's query: "?" and the query exactly as the viewer sent it, or ""
// when its URL had no "?". rawQueryString() (a method of the request in
// cloudfront-js-2.0) gives the query unparsed and unaltered, without the "?":
// "" for a "?" with nothing after it, undefined for no "?". It is taken as it
// is; only what a header cannot carry is percent-encoded (uriSafe), so empty
// pairs ("&&"), "a=" against "a", and the order of every pair are kept.
function locationQuery(request) {
    if (typeof request.rawQueryString === "function") {
        var raw = request.rawQueryString();
        return raw === undefined || raw === null ? "" : "?" + uriSafe(raw);
    }
    // Fallback, for a request without rawQueryString() (a runtime or a test
    // event that does not provide it): the query rebuilt from the object,
    // which loses what the object does not hold (see queryString).
    var query = queryString(request.querystring);
    return query ? "?" + query : "";
}

// The fallback's query string, rebuilt from CloudFront's object, keys and
// values as CloudFront hands them (still percent-encoded): a key with several
// values gives one pair per value, in order; a key with an empty value gives
// the bare key; no parameters give "" (and the Location has no "?"). The
// object does not hold empty pairs or "a=" apart from "a", and groups the
// pairs of one key together; its keys come in the order the runtime lists.
function queryString(querystring) {
    if (typeof querystring === "string") {
        return uriSafe(querystring);
    }
    var pairs = [];
    for (var key in querystring) {
        if (!Object.prototype.hasOwnProperty.call(querystring, key)) {
            continue;
        }
        var entry = querystring[key];
        var values = entry.multiValue && entry.multiValue.length ? entry.multiValue : [entry];
        for (var i = 0; i < values.length; i++) {
            var value = values[i].value;
            pairs.push(uriSafe(key) + (value === "" || value === undefined ? "" : "=" + uriSafe(value)));
        }
    }
    return pairs.join("&");
}

// The text unchanged, except characters a header cannot carry as they are
// (non-ASCII, spaces, control characters), which get their UTF-8
// percent-encoding. An existing %XX is left alone: nothing is decoded or
// encoded twice.
function uriSafe(text) {
    return String(text).replace(/[^\x21-\x7e]+/g, function (run) {
        return encodeURIComponent(run);
    });
}

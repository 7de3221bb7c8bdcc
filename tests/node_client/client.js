#!/usr/bin/env node
// A featurestore.v1 client in Node.js, built from the .proto alone (no generated code, no Python):
// proof that the gRPC API is usable outside Python. Run by tests/test_node_client.py.
//
//   node client.js HOST:PORT FEATURES ENTITIES
//
//   FEATURES  JSON: a list of "view:feature" refs (feature_list), or a string (a feature service name)
//   ENTITIES  JSON: {"join_key": [id, ...]}; ids are integers or decimal strings, sent as int64
//             (strings keep ids beyond 2^53 exact)
//
// On success prints one JSON object to stdout:
//   {"entities": {key: [ids as strings]},
//    "features": {name: {"dtype", "kind", "values", "statuses", "event_timestamps"}}}
// in the response's order. "kind" is the Column oneof case ("double_values", ...); values are null
// where the column's null flag is set; int64 values and timestamps are decimal strings (exact).
// On a gRPC error prints {"error": {"code": NAME, "details": ...}} to stdout, "CODE_NAME: details" to
// stderr, and exits 1. Bad arguments exit 2.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'featurestore/v1/feature_store.proto';
const DEADLINE_MS = 20000;

function usage(message) {
  process.stderr.write(`${message}\nusage: node client.js HOST:PORT FEATURES_JSON ENTITIES_JSON\n`);
  process.exit(2);
}

function loadService() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: feature_list, int64_values, event_timestamps
    longs: String, // int64 as decimal strings: JS numbers lose precision beyond 2^53
    enums: String, // FieldStatus by name: "FIELD_STATUS_PRESENT"
    bytes: String, // bytes as base64
    defaults: true, // empty repeated fields as [] rather than missing
    oneofs: true, // a virtual field per oneof naming its set case
  });
  return grpc.loadPackageDefinition(definition).featurestore.v1.FeatureStoreService;
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return usage(`${what} is not JSON: ${err.message}`);
  }
}

function buildRequest(features, entities) {
  const request = { entities: {} };
  if (typeof features === 'string') {
    request.feature_service = features;
  } else if (Array.isArray(features) && features.every((f) => typeof f === 'string')) {
    request.feature_list = { refs: features };
  } else {
    usage('FEATURES must be a list of "view:feature" refs or a feature service name');
  }
  if (entities === null || typeof entities !== 'object' || Array.isArray(entities)) {
    usage('ENTITIES must be an object {"join_key": [id, ...]}');
  }
  for (const [key, ids] of Object.entries(entities)) {
    const exact = (id) => Number.isSafeInteger(id) || (typeof id === 'string' && /^-?\d+$/.test(id));
    if (!Array.isArray(ids) || !ids.every(exact)) {
      usage(`ENTITIES.${key} must be a list of integers below 2^53 or decimal strings`);
    }
    // A map<string, Column> field is a plain object; the oneof case is chosen by setting one member.
    request.entities[key] = { int64_values: { values: ids.map(String) } };
  }
  return request;
}

// The values of a decoded Column: a list (nested lists for array_values), null at null rows.
function columnValues(column) {
  const kind = column.kind; // with oneofs: true, the name of the set case ("double_values"), or undefined
  let values;
  if (!kind) {
    values = [];
  } else if (kind === 'array_values') {
    values = column.array_values.rows.map((row) => columnValues(row).values);
  } else {
    values = column[kind].values.slice();
  }
  if (column.nulls.length) {
    if (column.nulls.length !== values.length) {
      throw new Error(`a column has ${values.length} values but ${column.nulls.length} null flags`);
    }
    values = values.map((v, i) => (column.nulls[i] ? null : v));
  }
  return { kind: kind || null, values };
}

function main() {
  const [address, featuresArg, entitiesArg] = process.argv.slice(2);
  if (!address || featuresArg === undefined || entitiesArg === undefined) {
    usage('missing arguments');
  }
  const request = buildRequest(parseJson(featuresArg, 'FEATURES'), parseJson(entitiesArg, 'ENTITIES'));
  const Service = loadService();
  const client = new Service(address, grpc.credentials.createInsecure());
  const deadline = new Date(Date.now() + DEADLINE_MS);
  client.GetOnlineFeatures(request, { deadline }, (err, response) => {
    client.close();
    if (err) {
      const code = grpc.status[err.code] || String(err.code); // numeric enum -> its name
      process.stdout.write(`${JSON.stringify({ error: { code, details: err.details } })}\n`);
      process.stderr.write(`${code}: ${err.details}\n`);
      process.exitCode = 1;
      return;
    }
    const out = { entities: {}, features: {} };
    for (const [key, column] of Object.entries(response.entities)) {
      out.entities[key] = columnValues(column).values;
    }
    for (const feature of response.features) {
      const { kind, values } = columnValues(feature.values);
      out.features[feature.name] = {
        dtype: feature.dtype,
        kind,
        values,
        statuses: feature.statuses,
        event_timestamps: feature.event_timestamps,
      };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  });
}

main();

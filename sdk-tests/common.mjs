// Helpers shared by the SDK end-to-end scripts: arguments, a global timeout, assertions.

import { isDeepStrictEqual, inspect } from 'node:util';

const GLOBAL_TIMEOUT_MS = 20_000;

// Reads `<host> <port> <websocket|http>` from the command line (exits with the usage line otherwise)
// and arms a global timeout that ends the process with exit code 1.
export function scriptArgs(script) {
  const [host, portArg, protocol] = process.argv.slice(2);
  const port = Number(portArg);
  if (!host || !Number.isInteger(port) || port <= 0 || !['websocket', 'http'].includes(protocol)) {
    console.error(`usage: node ${script} <host> <port> <websocket|http>`);
    process.exit(1);
  }
  const timer = setTimeout(() => {
    console.error(`timeout: no result after ${GLOBAL_TIMEOUT_MS} ms (${protocol})`);
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);
  timer.unref();
  return { host, port, protocol };
}

export function fail(message) {
  throw new Error(message);
}

export function show(value) {
  return inspect(value, { depth: 6, breakLength: Infinity });
}

export function assertEqual(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

// Runs `promise`, which must reject with a KuzzleError of the given id and status.
export async function expectKuzzleError(promise, id, status, what) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    // KuzzleError is not exported by kuzzle-sdk 7.17.1, hence the check on the constructor name.
    if (err?.constructor?.name !== 'KuzzleError') {
      fail(`${what}: expected a KuzzleError, got ${show(err)}`);
    }
    assertEqual(err.id, id, `${what}: error id (message: ${show(err.message)})`);
    assertEqual(err.status, status, `${what}: error status`);
    return err;
  }
  fail(`${what}: expected the error ${id}, but it succeeded with ${show(result)}`);
}

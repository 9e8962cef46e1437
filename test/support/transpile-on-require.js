// Preloaded with `node -r` by tests that start child processes on the TypeScript sources:
// transpiles each required .ts file on the fly (no type check; jest's run type-checks them).
// Output is cached by content hash, so only the first child process pays for the compiler.
const { createHash } = require('node:crypto');
const { mkdirSync, readFileSync, writeFileSync, renameSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const cacheDir = join(tmpdir(), 'nestjs-distributed-lock-transpiled');
let ts;

function transpile(source, filename) {
  ts ??= require('typescript');
  const compilerOptions = {
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
    esModuleInterop: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    useDefineForClassFields: false,
  };
  return ts.transpileModule(source, { compilerOptions, fileName: filename }).outputText;
}

require.extensions['.ts'] = function compileTypeScript(module, filename) {
  const source = readFileSync(filename, 'utf8');
  const cached = join(cacheDir, `${createHash('sha1').update(filename).update('\0').update(source).digest('hex')}.js`);
  let output;
  try {
    output = readFileSync(cached, 'utf8');
  } catch {
    output = transpile(source, filename);
    mkdirSync(cacheDir, { recursive: true });
    // Written aside and renamed, so a concurrent reader never sees half a file.
    const partial = `${cached}.${process.pid}`;
    writeFileSync(partial, output);
    renameSync(partial, cached);
  }
  module._compile(output, filename);
};

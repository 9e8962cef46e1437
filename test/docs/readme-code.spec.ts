import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ts from 'typescript';

/**
 * Every ```ts block of the README type-checks as a user would copy it, under the compiler options of
 * the apps `nest new` makes (strict, isolatedModules, emitDecoratorMetadata, nodenext; as ES modules
 * for Nest 12 and as CommonJS for Nest 11). Blocks stay what a user copies: names a block uses without
 * importing them (a snippet such as `LockModule.forRootAsync({...})`) come from the prelude below. A
 * block whose first line is `// <file>.ts` is that file, beside the other files of its section, so
 * the quick start's files import each other as written. `nestjs-distributed-lock` resolves to lib/.
 */
const ROOT = join(__dirname, '..', '..');
const README = join(ROOT, 'README.md');
const BLOCKS_DIR = join(ROOT, 'test', 'docs', '.readme-blocks');

/** Where a name that a block uses without importing it comes from. */
const PRELUDE: Record<string, string> = {
  Module: '@nestjs/common',
  Injectable: '@nestjs/common',
  ConfigModule: '@nestjs/config',
  ConfigService: '@nestjs/config',
  LockModule: 'nestjs-distributed-lock',
  DistributedLock: 'nestjs-distributed-lock',
  redisBackend: 'nestjs-distributed-lock/redis',
  postgresBackend: 'nestjs-distributed-lock/postgres',
};

interface Block {
  /** Line in README.md of the block's first line of code. */
  line: number;
  section: string;
  file: string;
  code: string;
}

function readmeBlocks(): Block[] {
  const lines = readFileSync(README, 'utf8').split('\n');
  const blocks: Block[] = [];
  let section = 'top';
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('## ')) section = lines[i].slice(3).trim();
    if (lines[i].trim() !== '```ts') continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end].trim() !== '```') end++;
    const code = lines.slice(start, end).join('\n');
    const named = /^\/\/ ([\w.-]+\.ts)\b/.exec(lines[start] ?? '');
    const slug = section.toLowerCase().replace(/[^a-z0-9]+/g, '-');
    blocks.push({
      line: start + 1,
      section,
      file: join(BLOCKS_DIR, slug, named ? named[1] : `block-${start + 1}.ts`),
      code,
    });
    i = end;
  }
  return blocks;
}

/** Names a block declares or imports at its top level. */
function declaredNames(code: string): Set<string> {
  const source = ts.createSourceFile('block.ts', code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names = new Set<string>();
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      if (clause?.name) names.add(clause.name.text);
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamedImports(bindings))
        for (const element of bindings.elements) names.add(element.name.text);
      if (bindings && ts.isNamespaceImport(bindings)) names.add(bindings.name.text);
    } else if ((ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement)) && statement.name) {
      names.add(statement.name.text);
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name)) names.add(declaration.name.text);
      }
    }
  }
  return names;
}

/** The block's text with the prelude's imports of the names it uses but does not import. */
function withPrelude(block: Block): { text: string; preludeLines: number } {
  const declared = declaredNames(block.code);
  const byModule = new Map<string, string[]>();
  for (const [name, from] of Object.entries(PRELUDE)) {
    if (declared.has(name) || !new RegExp(`\\b${name}\\b`).test(block.code)) continue;
    byModule.set(from, [...(byModule.get(from) ?? []), name]);
  }
  const imports = [...byModule].map(([from, names]) => `import { ${names.join(', ')} } from '${from}';`);
  return { text: [...imports, block.code].join('\n'), preludeLines: imports.length };
}

function typeCheck(blocks: Block[], format: 'module' | 'commonjs'): string[] {
  const files = new Map<string, { text: string; block: Block; preludeLines: number }>();
  for (const block of blocks) files.set(block.file, { ...withPrelude(block), block });
  const packageJsons = new Set([...files.keys()].map((file) => join(dirname(file), 'package.json')));
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    isolatedModules: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    esModuleInterop: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2023,
    lib: ['lib.es2023.d.ts', 'lib.es2024.string.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    paths: {
      'nestjs-distributed-lock': [join(ROOT, 'lib', 'index.ts')],
      'nestjs-distributed-lock/*': [join(ROOT, 'lib', '*.ts')],
    },
  };
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile, directoryExists } = host;
  const virtualDirs = new Set([...files.keys()].flatMap((file) => [dirname(file), BLOCKS_DIR]));
  host.directoryExists = (dir) => virtualDirs.has(dir) || (directoryExists?.call(host, dir) ?? true);
  host.fileExists = (file) => files.has(file) || packageJsons.has(file) || fileExists.call(host, file);
  host.readFile = (file) =>
    files.get(file)?.text ?? (packageJsons.has(file) ? JSON.stringify({ type: format }) : readFile.call(host, file));
  host.getSourceFile = (file, language, onError, create) => {
    const virtual = files.get(file);
    return virtual
      ? ts.createSourceFile(file, virtual.text, language)
      : getSourceFile.call(host, file, language, onError, create);
  };
  const program = ts.createProgram({ rootNames: [...files.keys()], options, host });
  const problems: string[] = [];
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const virtual = diagnostic.file ? files.get(diagnostic.file.fileName) : undefined;
    if (!virtual) continue; // the library's own files are checked by the typecheck script
    const { line } = diagnostic.file!.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
    const readmeLine = virtual.block.line + line - virtual.preludeLines;
    problems.push(
      `README.md:${readmeLine} (${format}): TS${diagnostic.code} ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`,
    );
  }
  return problems;
}

describe('README code', () => {
  const blocks = readmeBlocks();

  it('has the blocks this test is about', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    expect(blocks.filter((b) => b.section === 'Quick start').map((b) => b.file.split('/').pop())).toEqual(
      expect.arrayContaining(['app.module.ts', 'order.service.ts', 'order.controller.ts']),
    );
    // One file per name within a section.
    expect(new Set(blocks.map((b) => b.file)).size).toBe(blocks.length);
  });

  it.each(['module', 'commonjs'] as const)('every ts block type-checks as a %s app would compile it', (format) => {
    expect(typeCheck(blocks, format)).toEqual([]);
  });

  it('a section that uses @Cron also imports ScheduleModule.forRoot(), without which @Cron never fires', () => {
    const sections = new Set(blocks.filter((b) => /@Cron\(/.test(b.code)).map((b) => b.section));
    expect(sections.size).toBeGreaterThan(0);
    for (const section of sections) {
      expect(blocks.some((b) => b.section === section && b.code.includes('ScheduleModule.forRoot()'))).toBe(true);
    }
  });
});

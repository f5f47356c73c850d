// Static checks of the container files (Dockerfile, docker-compose.yml): no Docker engine needed.
// Every check is a named function returning why it fails (or undefined); each is run against the
// real file, against a deliberately bad inline file, and against targeted mutations of the real
// file, so that a check which can never fail would show up here.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config.js';

const root = path.resolve(import.meta.dirname, '../..');
const readRepoFile = (name: string): string => readFileSync(path.join(root, name), 'utf8');

type Check<T> = (subject: T) => string | undefined;

/** Replaces the one occurrence of `from`; throws when it is missing, so no mutation is a no-op. */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`expected exactly one ${JSON.stringify(from)}`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

// ---------------------------------------------------------------------------------------------
// A tiny Dockerfile parser: enough for the checks below (default `\` escape, no heredocs).

interface Instruction {
  keyword: string; // upper-cased
  args: string; // the rest, continuations joined
  line: number; // 1-based line of the instruction's first line
}

interface Stage {
  index: number;
  image: string;
  name: string | undefined; // lower-cased, as Docker compares stage names
  instructions: Instruction[];
}

interface Dockerfile {
  instructions: Instruction[];
  stages: Stage[];
}

function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  const finish = (): void => {
    if (!pending) return;
    const match = /^(\S+)\s*([\s\S]*)$/.exec(pending.text.trim());
    if (match?.[1]) {
      instructions.push({ keyword: match[1].toUpperCase(), args: (match[2] ?? '').trim(), line: pending.line });
    }
    pending = undefined;
  };
  text.split(/\r?\n/).forEach((raw, i) => {
    const trimmed = raw.trim();
    // Docker drops comment lines (parser directives included) and blank lines, even in the
    // middle of a continued instruction.
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const continued = /\\\s*$/.test(raw);
    const piece = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (pending) pending.text += piece;
    else pending = { text: piece, line: i + 1 };
    if (!continued) finish();
  });
  finish(); // a trailing continuation at the end of the file

  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const [image = '', as, name] = words;
      stages.push({
        index: stages.length,
        image,
        name: as?.toUpperCase() === 'AS' && name ? name.toLowerCase() : undefined,
        instructions: [],
      });
    } else {
      stages.at(-1)?.instructions.push(instruction); // ARGs before the first FROM belong to none
    }
  }
  return { instructions, stages };
}

/** The words of an exec-form (JSON array) argument, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(args);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  } catch {
    // Docker runs an unparsable array as a shell command; so do we.
  }
  return undefined;
}

/** Splits shell-like words: double quotes (with `\` escapes), single quotes, `\` outside quotes. */
function shellWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charAt(i);
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word = (word ?? '') + text.charAt(++i);
      else word = (word ?? '') + c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text.charAt(++i);
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** `ENV A=1 B="x y"`, or the legacy `ENV NAME value with spaces`. Values are not expanded. */
function parseEnv(args: string): Record<string, string> {
  const legacy = /^([^\s=]+)\s+([\s\S]*)$/.exec(args);
  if (legacy?.[1] && legacy[2] !== undefined) return { [legacy[1]]: legacy[2].trim() };
  const env: Record<string, string> = {};
  for (const word of shellWords(args)) {
    const eq = word.indexOf('=');
    if (eq > 0) env[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return env;
}

/** A stage's instructions including those inherited from earlier stages it is built `FROM`. */
function effective(df: Dockerfile, stage: Stage): Instruction[] {
  const parent = df.stages.find((s) => s.index < stage.index && s.name === stage.image.toLowerCase());
  return parent ? [...effective(df, parent), ...stage.instructions] : stage.instructions;
}

function finalStage(df: Dockerfile): { stage: Stage; instructions: Instruction[] } | undefined {
  const stage = df.stages.at(-1);
  return stage && { stage, instructions: effective(df, stage) };
}

function lastOf(instructions: Instruction[], keyword: string): Instruction | undefined {
  return instructions.filter((i) => i.keyword === keyword).at(-1);
}

function envOf(instructions: Instruction[]): Record<string, string> {
  return Object.assign({}, ...instructions.filter((i) => i.keyword === 'ENV').map((i) => parseEnv(i.args))) as Record<
    string,
    string
  >;
}

/** The command text of a RUN/CMD/HEALTHCHECK CMD argument, whichever its form. */
function commandText(args: string): string {
  return execForm(args)?.join(' ') ?? args;
}

/** Leading `--flag=value` words of COPY, FROM, HEALTHCHECK…, and the rest. */
function splitFlags(args: string): { flags: Map<string, string>; rest: string } {
  const flags = new Map<string, string>();
  let rest = args.trim();
  for (let m = /^--([\w-]+)(?:=(\S*))?\s*/.exec(rest); m; m = /^--([\w-]+)(?:=(\S*))?\s*/.exec(rest)) {
    flags.set(m[1] ?? '', m[2] ?? '');
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

/** The stage a `COPY --from=<ref>` in `stage` names, if it is an earlier one. */
function sourceStage(df: Dockerfile, stage: Stage, ref: string): Stage | undefined {
  const earlier = df.stages.filter((s) => s.index < stage.index);
  return /^\d+$/.test(ref) ? earlier[Number(ref)] : earlier.find((s) => s.name === ref.toLowerCase());
}

function runtimeUser(instructions: Instruction[]): string | undefined {
  return lastOf(instructions, 'USER')?.args.split(':')[0]?.trim();
}

// A Debian (glibc) Node 22 image: the embedded PostgreSQL binaries need glibc, so no Alpine.
const DEBIAN_NODE_22 = /^(docker\.io\/)?(library\/)?node:22(\.\d+){0,2}-(bookworm|bullseye)(-slim)?(@sha256:[0-9a-f]{64})?$/;

const dockerfileChecks: Record<string, Check<Dockerfile>> = {
  'has a build stage and a runtime stage': (df) =>
    df.stages.length >= 2 ? undefined : `${df.stages.length} FROM stage(s)`,

  'every FROM is a Debian-based node:22 image (or an earlier stage)': (df) => {
    const bad = df.stages.filter(
      (s) => !DEBIAN_NODE_22.test(s.image) && !df.stages.some((p) => p.index < s.index && p.name === s.image.toLowerCase()),
    );
    return bad.length === 0 ? undefined : `not a Debian node:22 image: ${bad.map((s) => s.image).join(', ')}`;
  },

  'every COPY --from names an earlier stage': (df) => {
    const bad: string[] = [];
    for (const stage of df.stages) {
      for (const i of stage.instructions) {
        const from = i.keyword === 'COPY' ? splitFlags(i.args).flags.get('from') : undefined;
        if (from !== undefined && !sourceStage(df, stage, from)) bad.push(`line ${i.line}: --from=${from}`);
      }
    }
    return bad.length === 0 ? undefined : `no such earlier stage: ${bad.join('; ')}`;
  },

  'the final stage copies dist/ from an earlier stage': (df) => {
    const last = df.stages.at(-1);
    const ok = last?.instructions.some((i) => {
      if (i.keyword !== 'COPY') return false;
      const { flags, rest } = splitFlags(i.args);
      const from = flags.get('from');
      const sources = (execForm(rest) ?? rest.split(/\s+/)).slice(0, -1);
      return from !== undefined && sourceStage(df, last, from) !== undefined && sources.some((s) => /(^|\/)dist\/?$/.test(s));
    });
    return ok ? undefined : 'no COPY --from=<stage> of dist/ in the final stage';
  },

  'the final stage installs production dependencies only (npm ci --omit=dev)': (df) => {
    const runs = finalStage(df)?.instructions.filter((i) => i.keyword === 'RUN') ?? [];
    return runs.some((i) => /\bnpm\s+ci\b[^;&|]*\s--omit[= ]dev\b/.test(commandText(i.args)))
      ? undefined
      : 'no RUN npm ci --omit=dev in the final stage';
  },

  'the final stage runs as a non-root USER': (df) => {
    const user = runtimeUser(finalStage(df)?.instructions ?? []);
    if (user === undefined) return 'no USER after the last FROM (the image would run as root)';
    return user === '' || user === 'root' || user === '0' ? `USER ${user} is root` : undefined;
  },

  'ENV sets HOST=0.0.0.0': (df) => {
    const host = envOf(finalStage(df)?.instructions ?? []).HOST;
    return host === '0.0.0.0' ? undefined : `HOST is ${host ?? 'unset'} (the service would listen on loopback only)`;
  },

  'ENV passes the service configuration checks': (df) => {
    try {
      loadConfig(envOf(finalStage(df)?.instructions ?? []));
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  },

  'EXPOSE publishes the PORT the service listens on': (df) => {
    const final = finalStage(df)?.instructions ?? [];
    const port = envOf(final).PORT ?? '8080';
    const exposed = final
      .filter((i) => i.keyword === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/).map((p) => p.replace(/\/tcp$/, '')));
    return exposed.includes(port) ? undefined : `PORT ${port} is not exposed (EXPOSE ${exposed.join(' ') || 'none'})`;
  },

  'the data directory is a VOLUME owned by the service user': (df) => {
    const final = finalStage(df)?.instructions ?? [];
    const dir = envOf(final).AGENTGATE_DATA_DIR;
    if (!dir) return 'ENV does not set AGENTGATE_DATA_DIR';
    const volumeAt = final.findIndex(
      (i) => i.keyword === 'VOLUME' && (execForm(i.args) ?? i.args.split(/\s+/)).includes(dir),
    );
    if (volumeAt < 0) return `${dir} is not declared as a VOLUME`;
    const user = runtimeUser(final);
    // Docker discards changes to a volume path made after its VOLUME line: chown must precede it.
    const owned = final.slice(0, volumeAt).some((i) => {
      if (i.keyword !== 'RUN') return false;
      const words = commandText(i.args).split(/\s+/);
      return words.includes('chown') && words.includes(dir) && words.some((w) => w === user || w.startsWith(`${user}:`));
    });
    return owned ? undefined : `no RUN chown ${user ?? '<user>'} ${dir} before VOLUME ${dir}`;
  },

  'HEALTHCHECK probes /healthz with node (slim images have no curl)': (df) => {
    const hc = lastOf(finalStage(df)?.instructions ?? [], 'HEALTHCHECK');
    if (!hc) return 'no HEALTHCHECK';
    const { rest } = splitFlags(hc.args);
    const cmd = /^CMD\s+([\s\S]*)$/i.exec(rest)?.[1];
    if (cmd === undefined) return `HEALTHCHECK ${rest} runs no command`;
    const program = execForm(cmd)?.[0] ?? cmd.split(/\s+/)[0];
    if (program !== 'node') return `HEALTHCHECK runs ${program ?? 'nothing'}, not node`;
    return commandText(cmd).includes('/healthz') ? undefined : 'HEALTHCHECK does not request /healthz';
  },

  'STOPSIGNAL, when set, is SIGTERM (the signal the service drains on)': (df) => {
    const signal = lastOf(finalStage(df)?.instructions ?? [], 'STOPSIGNAL')?.args;
    return signal === undefined || signal === 'SIGTERM' || signal === '15' ? undefined : `STOPSIGNAL ${signal}`;
  },

  'ENTRYPOINT/CMD run `node dist/src/cli.js serve` in exec form': (df) => {
    const final = finalStage(df)?.instructions ?? [];
    const words: string[] = [];
    for (const keyword of ['ENTRYPOINT', 'CMD']) {
      const i = lastOf(final, keyword);
      if (!i) continue;
      const exec = execForm(i.args);
      // In shell form /bin/sh is PID 1 and SIGTERM never reaches node.
      if (!exec) return `${keyword} is in shell form: ${i.args}`;
      words.push(...exec);
    }
    const [program, script, ...rest] = words;
    if (program !== 'node' || script !== 'dist/src/cli.js') return `runs ${words.join(' ') || 'nothing'}`;
    return rest.length === 0 || (rest.length === 1 && rest[0] === 'serve') ? undefined : `runs cli.js ${rest.join(' ')}`;
  },
};

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function at(value: unknown, ...keys: string[]): unknown {
  let current = value;
  for (const key of keys) current = isRecord(current) ? current[key] : undefined;
  return current;
}

function scalar(value: unknown): string | undefined {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
}

/**
 * Compose variable interpolation ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
 * ${VAR:?error}, ${VAR?error}) against `env`: the checks use an empty one, so they see the
 * defaults a fresh checkout runs with, whatever the developer's shell holds.
 */
function interpolate(text: string, env: Record<string, string | undefined> = {}): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)/g,
    (match, braced: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (match === '$$') return '$';
      const name = braced ?? bare ?? '';
      const value = env[name];
      const missing = value === undefined || (op?.startsWith(':') === true && value === '');
      if (op?.endsWith('-')) return missing ? (arg ?? '') : (value ?? '');
      if (op?.endsWith('?') && missing) throw new Error(`${name} must be set: ${arg ?? ''}`);
      return value ?? '';
    },
  );
}

function serviceEnv(service: unknown): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  const raw = at(service, 'environment');
  if (Array.isArray(raw)) {
    for (const item of raw) {
      const text = scalar(item) ?? '';
      const eq = text.indexOf('=');
      if (eq < 0) env[text] = undefined; // passed through from the host: unset here
      else env[text.slice(0, eq)] = interpolate(text.slice(eq + 1));
    }
  } else if (isRecord(raw)) {
    for (const [name, value] of Object.entries(raw)) {
      const text = scalar(value);
      env[name] = text === undefined ? undefined : interpolate(text);
    }
  }
  return env;
}

function healthcheckText(service: unknown): string | undefined {
  if (at(service, 'healthcheck', 'disable') === true) return undefined;
  const test = at(service, 'healthcheck', 'test');
  if (Array.isArray(test)) return test.map((w) => scalar(w) ?? '').join(' ');
  return scalar(test);
}

/** [published, target] pairs of a service's `ports`, short ("[ip:]host:container[/proto]") or long syntax. */
function publishedPorts(service: unknown): [string | undefined, string][] {
  const ports = at(service, 'ports');
  if (!Array.isArray(ports)) return [];
  return ports.flatMap((p): [string | undefined, string][] => {
    if (isRecord(p)) {
      const target = scalar(p.target);
      const published = scalar(p.published);
      return target ? [[published === undefined ? undefined : interpolate(published), target]] : [];
    }
    const parts = interpolate(scalar(p) ?? '').replace(/\/(tcp|udp)$/, '').split(':');
    const target = parts.at(-1) ?? '';
    return [[parts.length > 1 ? parts.at(-2) : undefined, target]];
  });
}

const composeChecks: Record<string, Check<unknown>> = {
  'the reference agent runs `agentgate agent` against the agentgate service': (doc) => {
    const agent = at(doc, 'services', 'reference-agent');
    if (!isRecord(agent)) return 'missing service reference-agent';
    const command = Array.isArray(agent.command) ? agent.command.map((c) => interpolate(String(c))) : [];
    const flag = (name: string) => command[command.indexOf(name) + 1];
    if (command[0] !== 'agent') return `reference-agent command: ${command.join(' ')}`;
    if (flag('--gate') !== 'http://agentgate:8080') return `reference-agent --gate: ${flag('--gate') ?? 'none'}`;
    if (!/^0\.0\.0\.0:\d+$/.test(flag('--listen') ?? '')) return `reference-agent --listen: ${flag('--listen') ?? 'none'}`;
    if (command.includes('--token')) return 'reference-agent passes its token on the command line';
    const env = serviceEnv(agent);
    if (!('AGENTGATE_AGENT_TOKEN' in env)) return 'reference-agent has no AGENTGATE_AGENT_TOKEN';
    const condition = at(agent, 'depends_on', 'agentgate', 'condition');
    if (condition !== 'service_healthy') return `reference-agent depends_on agentgate: ${String(condition)}`;
    return undefined;
  },

  'has services postgres and agentgate': (doc) => {
    const missing = ['postgres', 'agentgate'].filter((s) => !isRecord(at(doc, 'services', s)));
    return missing.length === 0 ? undefined : `missing service(s): ${missing.join(', ')}`;
  },

  'postgres has a pg_isready healthcheck': (doc) => {
    const test = healthcheckText(at(doc, 'services', 'postgres'));
    return test?.includes('pg_isready') ? undefined : `postgres healthcheck: ${test ?? 'none'}`;
  },

  'agentgate waits for a healthy postgres': (doc) => {
    const dependsOn = at(doc, 'services', 'agentgate', 'depends_on');
    const condition = at(dependsOn, 'postgres', 'condition');
    return condition === 'service_healthy'
      ? undefined
      : `depends_on postgres: ${JSON.stringify(at(dependsOn, 'postgres') ?? dependsOn ?? null)}`;
  },

  'agentgate publishes port 8080': (doc) => {
    const ports = publishedPorts(at(doc, 'services', 'agentgate'));
    return ports.some(([published, target]) => published === '8080' && target === '8080')
      ? undefined
      : `ports: ${JSON.stringify(ports)}`;
  },

  // As npm run test:container runs the image: the service writes nowhere but /data and /tmp.
  'agentgate and the reference agent have a read-only root filesystem and a /tmp tmpfs': (doc) => {
    const wrong = ['agentgate', 'reference-agent'].filter((name) => {
      const svc = at(doc, 'services', name);
      const tmpfs = at(svc, 'tmpfs');
      const mounts = Array.isArray(tmpfs) ? tmpfs : [tmpfs];
      return at(svc, 'read_only') !== true || !mounts.some((m) => typeof m === 'string' && m.split(':')[0] === '/tmp');
    });
    return wrong.length === 0 ? undefined : `not read-only with a /tmp tmpfs: ${wrong.join(', ')}`;
  },

  'agentgate listens on HOST=0.0.0.0': (doc) => {
    const host = serviceEnv(at(doc, 'services', 'agentgate')).HOST;
    return host === '0.0.0.0' ? undefined : `HOST is ${host ?? 'unset'}`;
  },

  'agentgate DATABASE_URL points at the postgres service and its database': (doc) => {
    const raw = serviceEnv(at(doc, 'services', 'agentgate')).DATABASE_URL;
    if (!raw) return 'DATABASE_URL is unset (agentgate would run its embedded database)';
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return 'DATABASE_URL is not a URL';
    }
    const pg = serviceEnv(at(doc, 'services', 'postgres'));
    const expected = {
      host: 'postgres',
      port: '5432',
      user: pg.POSTGRES_USER ?? 'postgres',
      password: pg.POSTGRES_PASSWORD ?? '',
      database: pg.POSTGRES_DB ?? pg.POSTGRES_USER ?? 'postgres',
    };
    const actual = {
      host: url.hostname,
      port: url.port || '5432',
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.slice(1)),
    };
    const wrong = (Object.keys(expected) as (keyof typeof expected)[]).filter((k) => expected[k] !== actual[k]);
    return wrong.length === 0 ? undefined : `DATABASE_URL does not match the postgres service in: ${wrong.join(', ')}`;
  },

  'agentgate environment passes the service configuration checks': (doc) => {
    try {
      loadConfig(serviceEnv(at(doc, 'services', 'agentgate')));
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  },

  'agentgate has a healthcheck requesting /healthz': (doc) => {
    const test = healthcheckText(at(doc, 'services', 'agentgate'));
    return test?.includes('/healthz') ? undefined : `agentgate healthcheck: ${test ?? 'none'}`;
  },
};

// ---------------------------------------------------------------------------------------------

describe('the Dockerfile parser', () => {
  const sample = [
    '# syntax=docker/dockerfile:1',
    'ARG BASE=ignored',
    'FROM --platform=linux/amd64 node:22-bookworm-slim AS Build',
    'RUN echo a \\',
    '  # a comment inside a continuation is dropped',
    '',
    '  && echo b',
    'env A=1 B="two words" \\   ',
    '    C=x\\ y',
    'ENV LEGACY value with spaces',
    'FROM build',
    'CMD ["node", "x.js"]',
    'ENTRYPOINT node x.js',
    'RUN unterminated \\',
  ].join('\n');
  const df = parseDockerfile(sample);

  it('joins continuations, drops comments and blank lines, and upper-cases keywords', () => {
    expect(df.instructions.map((i) => [i.keyword, i.line])).toEqual([
      ['ARG', 2],
      ['FROM', 3],
      ['RUN', 4],
      ['ENV', 8],
      ['ENV', 10],
      ['FROM', 11],
      ['CMD', 12],
      ['ENTRYPOINT', 13],
      ['RUN', 14],
    ]);
    expect(df.instructions[2]?.args).toMatch(/^echo a\s+&& echo b$/);
    expect(df.instructions.at(-1)?.args).toBe('unterminated');
  });

  it('splits stages, skipping FROM flags and lower-casing names', () => {
    expect(df.stages.map((s) => [s.index, s.image, s.name, s.instructions.length])).toEqual([
      [0, 'node:22-bookworm-slim', 'build', 3],
      [1, 'build', undefined, 3],
    ]);
    // The second stage inherits the first one's instructions.
    const inherited = effective(df, df.stages[1] as Stage).map((i) => i.keyword);
    expect(inherited).toEqual(['RUN', 'ENV', 'ENV', 'CMD', 'ENTRYPOINT', 'RUN']);
  });

  it('parses both ENV forms', () => {
    expect(parseEnv(df.instructions[3]?.args ?? '')).toEqual({ A: '1', B: 'two words', C: 'x y' });
    expect(parseEnv(df.instructions[4]?.args ?? '')).toEqual({ LEGACY: 'value with spaces' });
  });

  it('tells the exec form from the shell form', () => {
    expect(execForm(df.instructions[6]?.args ?? '')).toEqual(['node', 'x.js']);
    expect(execForm(df.instructions[7]?.args ?? '')).toBeUndefined();
    expect(execForm('[not json')).toBeUndefined();
  });

  it('reads leading flags', () => {
    const { flags, rest } = splitFlags('--from=build --chown=node:node /app/dist ./dist');
    expect(Object.fromEntries(flags)).toEqual({ from: 'build', chown: 'node:node' });
    expect(rest).toBe('/app/dist ./dist');
  });
});

describe('the Dockerfile', () => {
  const real = readRepoFile('Dockerfile');
  const df = parseDockerfile(real);

  it.each(Object.keys(dockerfileChecks))('%s', (name) => {
    expect(dockerfileChecks[name]?.(df)).toBeUndefined();
  });

  // Fails every check at once: each check must be able to fail.
  const bad = parseDockerfile(
    [
      'FROM node:22-alpine',
      'COPY --from=builder /app/dist ./dist',
      'RUN npm ci',
      'ENV HOST=127.0.0.1 PORT=http',
      'EXPOSE 3000',
      'VOLUME /var/lib/agentgate',
      'HEALTHCHECK CMD curl -f http://localhost:3000/',
      'STOPSIGNAL SIGKILL',
      'CMD npm start',
    ].join('\n'),
  );

  it.each(Object.keys(dockerfileChecks))('rejects a bad Dockerfile: %s', (name) => {
    expect(dockerfileChecks[name]?.(bad)).toEqual(expect.any(String));
  });

  // Subtler breakages, each a small change to the real file, and the check that must catch it.
  const FROM = 'every FROM is a Debian-based node:22 image (or an earlier stage)';
  const OMIT_DEV = 'the final stage installs production dependencies only (npm ci --omit=dev)';
  const USER = 'the final stage runs as a non-root USER';
  const COPY_FROM = 'every COPY --from names an earlier stage';
  const DATA_DIR = 'the data directory is a VOLUME owned by the service user';
  const HEALTHCHECK = 'HEALTHCHECK probes /healthz with node (slim images have no curl)';
  const RUNS = 'ENTRYPOINT/CMD run `node dist/src/cli.js serve` in exec form';
  const mutations: { what: string; check: string; mutate: (text: string) => string }[] = [
    {
      what: 'the final stage on alpine',
      check: FROM,
      mutate: (t) => replaceOnce(t, 'FROM node:22-bookworm-slim AS runtime', 'FROM node:22-alpine AS runtime'),
    },
    { what: 'a full (dev) install in the final stage', check: OMIT_DEV, mutate: (t) => replaceOnce(t, 'npm ci --omit=dev', 'npm ci') },
    { what: 'USER root', check: USER, mutate: (t) => replaceOnce(t, 'USER node', 'USER root') },
    { what: 'USER 0:0', check: USER, mutate: (t) => replaceOnce(t, 'USER node', 'USER 0:0') },
    { what: 'no USER', check: USER, mutate: (t) => replaceOnce(t, 'USER node', '') },
    { what: 'a misspelt COPY --from', check: COPY_FROM, mutate: (t) => replaceOnce(t, '--from=build', '--from=biuld') },
    {
      what: 'chown after VOLUME',
      check: DATA_DIR,
      mutate: (t) =>
        `${replaceOnce(t, 'RUN mkdir -p /data && chown node:node /data', 'RUN mkdir -p /data')}\nRUN chown node:node /data\n`,
    },
    { what: 'a HEALTHCHECK on /readyz', check: HEALTHCHECK, mutate: (t) => replaceOnce(t, "/healthz'", "/readyz'") },
    {
      what: 'an ENTRYPOINT in shell form',
      check: RUNS,
      mutate: (t) => replaceOnce(t, 'ENTRYPOINT ["node", "dist/src/cli.js"]', 'ENTRYPOINT node dist/src/cli.js'),
    },
    {
      what: 'CMD npm start',
      check: RUNS,
      mutate: (t) => replaceOnce(t, 'ENTRYPOINT ["node", "dist/src/cli.js"]\nCMD ["serve"]', 'CMD ["npm", "start"]'),
    },
    { what: 'HOST on loopback', check: 'ENV sets HOST=0.0.0.0', mutate: (t) => replaceOnce(t, 'HOST=0.0.0.0', 'HOST=127.0.0.1') },
  ];

  it.each(mutations)('catches $what', ({ check: name, mutate }) => {
    const check = dockerfileChecks[name];
    expect(check).toBeDefined();
    expect(check?.(parseDockerfile(real))).toBeUndefined(); // the real file passes before the mutation
    expect(check?.(parseDockerfile(mutate(real)))).toEqual(expect.any(String));
  });
});

describe('docker-compose.yml', () => {
  const real: unknown = parseYaml(readRepoFile('docker-compose.yml'));

  it.each(Object.keys(composeChecks))('%s', (name) => {
    expect(composeChecks[name]?.(real)).toBeUndefined();
  });

  it('interpolates variables as compose does', () => {
    expect(interpolate('a${X:-d}b$${Y}', {})).toBe('adb${Y}');
    expect(interpolate('${X:-d}|${X-d}|$X', { X: '' })).toBe('d||');
    expect(interpolate('${X:-d}', { X: 'v' })).toBe('v');
    expect(() => interpolate('${X:?needed}', {})).toThrow('X must be set: needed');
  });

  const bad: unknown = parseYaml(
    [
      'services:',
      '  db:',
      '    image: postgres:15',
      '    environment: [POSTGRES_PASSWORD=secret]',
      '  agentgate:',
      '    build: .',
      '    depends_on: [db]',
      '    ports: ["9090:8080"]',
      '    environment:',
      '      DATABASE_URL: postgres://postgres:secret@localhost:5432/postgres',
      '      AGENTGATE_ADMIN_TOKEN: short',
      '    healthcheck:',
      '      test: ["CMD", "true"]',
    ].join('\n'),
  );

  it.each(Object.keys(composeChecks))('rejects a bad compose file: %s', (name) => {
    expect(composeChecks[name]?.(bad)).toEqual(expect.any(String));
  });

  type Doc = { services: Record<string, Record<string, unknown>> };
  const service = (d: Doc, name: string): Record<string, unknown> => d.services[name] ?? {};
  const agentgateEnv = (d: Doc): Record<string, unknown> => service(d, 'agentgate').environment as Record<string, unknown>;
  const DEPENDS = 'agentgate waits for a healthy postgres';
  const PORT = 'agentgate publishes port 8080';
  const URL_MATCHES = 'agentgate DATABASE_URL points at the postgres service and its database';
  const READ_ONLY = 'agentgate and the reference agent have a read-only root filesystem and a /tmp tmpfs';
  const mutations: { what: string; check: string; mutate: (doc: Doc) => void }[] = [
    { what: 'depends_on as a plain list', check: DEPENDS, mutate: (d) => (service(d, 'agentgate').depends_on = ['postgres']) },
    {
      what: 'depends_on service_started',
      check: DEPENDS,
      mutate: (d) => (service(d, 'agentgate').depends_on = { postgres: { condition: 'service_started' } }),
    },
    {
      what: 'a disabled postgres healthcheck',
      check: 'postgres has a pg_isready healthcheck',
      mutate: (d) => (service(d, 'postgres').healthcheck = { disable: true }),
    },
    { what: 'port 8080 on a random host port', check: PORT, mutate: (d) => (service(d, 'agentgate').ports = ['8080']) },
    {
      what: 'port 8080 on another host port (long syntax)',
      check: PORT,
      mutate: (d) => (service(d, 'agentgate').ports = [{ target: 8080, published: 18080 }]),
    },
    {
      what: 'a DATABASE_URL with another password',
      check: URL_MATCHES,
      mutate: (d) => (agentgateEnv(d).DATABASE_URL = 'postgres://postgres:other@postgres:5432/agentgate'),
    },
    {
      what: 'a DATABASE_URL on localhost',
      check: URL_MATCHES,
      mutate: (d) => (agentgateEnv(d).DATABASE_URL = 'postgres://postgres:agentgate-local@localhost:5432/agentgate'),
    },
    {
      what: 'a too short default admin token',
      check: 'agentgate environment passes the service configuration checks',
      mutate: (d) => (agentgateEnv(d).AGENTGATE_ADMIN_TOKEN = '${AGENTGATE_ADMIN_TOKEN:-short}'),
    },
    { what: 'HOST on loopback', check: 'agentgate listens on HOST=0.0.0.0', mutate: (d) => (agentgateEnv(d).HOST = '127.0.0.1') },
    { what: 'a writable root filesystem', check: READ_ONLY, mutate: (d) => delete service(d, 'agentgate').read_only },
    { what: 'a reference agent without a /tmp tmpfs', check: READ_ONLY, mutate: (d) => (service(d, 'reference-agent').tmpfs = ['/scratch']) },
    {
      what: 'a healthcheck on /readyz',
      check: 'agentgate has a healthcheck requesting /healthz',
      mutate: (d) =>
        (service(d, 'agentgate').healthcheck = {
          test: ['CMD-SHELL', `node -e "fetch('http://127.0.0.1:8080/readyz')"`],
        }),
    },
  ];

  it.each(mutations)('catches $what', ({ check: name, mutate }) => {
    const check = composeChecks[name];
    expect(check).toBeDefined();
    const doc = structuredClone(real) as Doc;
    expect(check?.(doc)).toBeUndefined(); // the clone passes before the mutation
    mutate(doc);
    expect(check?.(doc)).toEqual(expect.any(String));
  });
});

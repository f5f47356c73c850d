// The Kubernetes manifests of deploy/kubernetes: every document validates against the Kubernetes
// schema of its kind (kubernetes-models), the kustomization lists what exists, and the manifests
// agree with the service: the probes name routes that the app built from them answers, the ports
// are the one it listens on, every variable is one its configuration knows, the grace period
// covers the drain. Every check returns why it fails (or undefined) and is also run against
// targeted mutations of the real manifests, so that a check which can never fail shows up here.
// It builds the app over a real database, hence test/integration.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { ConfigSchema, loadConfig, type Config } from '../../src/config.js';
import { openDatabase } from '../../src/db/database.js';
import { startTestApp, type TestApp } from '../support/app.js';
import type { TestDatabase } from '../support/database.js';
import { withDatabase } from '../support/global-setup.js';

const root = path.resolve(import.meta.dirname, '../..');
const DIR = 'deploy/kubernetes';
const KUSTOMIZATION = 'kustomization.yaml';
// Not applied with the rest: it would overwrite the real Secret's values on every apply.
const SECRET_EXAMPLE = 'secret.example.yaml';
const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };

// ---------------------------------------------------------------------------------------------
// Loading

interface Manifest {
  file: string;
  /** 0-based index of the document in its file. */
  doc: number;
  object: Record<string, unknown>;
}

interface DeployDir {
  /** Every file name in the directory. */
  files: string[];
  kustomization: Record<string, unknown>;
  /** Every document of every YAML file but the kustomization. */
  manifests: Manifest[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The documents of a YAML file; throws with the file name and the parser's first error. */
function parseYamlFile(file: string, text: string): unknown[] {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return []; // an empty stream
  const values: unknown[] = [];
  for (const doc of docs) {
    const error = doc.errors[0];
    if (error) throw new Error(`${file}: ${error.message}`);
    const value: unknown = doc.toJS();
    if (value !== null) values.push(value);
  }
  return values;
}

function loadDeployDir(): DeployDir {
  const dir = path.join(root, DIR);
  const files = readdirSync(dir).sort();
  let kustomization: Record<string, unknown> = {};
  const manifests: Manifest[] = [];
  for (const file of files.filter((f) => /\.ya?ml$/.test(f))) {
    const docs = parseYamlFile(file, readFileSync(path.join(dir, file), 'utf8'));
    if (file === KUSTOMIZATION) {
      kustomization = isRecord(docs[0]) ? docs[0] : {};
      continue;
    }
    docs.forEach((object, doc) => {
      if (!isRecord(object)) throw new Error(`${file}, document ${doc + 1}: not a mapping`);
      manifests.push({ file, doc, object });
    });
  }
  return { files, kustomization, manifests };
}

// ---------------------------------------------------------------------------------------------
// Schemas: one kubernetes-models class per apiVersion and kind this directory may hold.

function validator<T extends { validate(): void }>(model: new (data: never) => T): (data: unknown) => void {
  return (data) => new model(data as never).validate();
}

const MODELS: Record<string, (data: unknown) => void> = {
  'apps/v1 Deployment': validator(Deployment),
  'v1 Service': validator(Service),
  'v1 ConfigMap': validator(ConfigMap),
  'v1 Secret': validator(Secret),
  'policy/v1 PodDisruptionBudget': validator(PodDisruptionBudget),
  'autoscaling/v2 HorizontalPodAutoscaler': validator(HorizontalPodAutoscaler),
  'networking.k8s.io/v1 NetworkPolicy': validator(NetworkPolicy),
};

const where = (m: Manifest) => `${m.file}${m.doc > 0 ? ` (document ${m.doc + 1})` : ''}`;
const kindOf = (m: Manifest) => `${String(m.object.apiVersion)} ${String(m.object.kind)}`;

// The typed views below are read after the schema check; they still read every field as
// optional, so that a broken manifest fails its check rather than the test run.
function ofKind<T>(d: DeployDir, kind: string, files?: (file: string) => boolean): T[] {
  return d.manifests.filter((m) => m.object.kind === kind && (files?.(m.file) ?? true)).map((m) => m.object as T);
}
const applied = (file: string) => file !== SECRET_EXAMPLE;

function deploymentOf(d: DeployDir): IDeployment | undefined {
  return ofKind<IDeployment>(d, 'Deployment', applied)[0];
}
function podSpecOf(d: DeployDir): IPodSpec | undefined {
  return deploymentOf(d)?.spec?.template.spec;
}
function containerOf(d: DeployDir): IContainer | undefined {
  return podSpecOf(d)?.containers.find((c) => c.name === 'agentgate');
}
function configMapNamed(d: DeployDir, name: string | undefined): IConfigMap | undefined {
  return ofKind<IConfigMap>(d, 'ConfigMap', applied).find((c) => c.metadata?.name === name);
}
function exampleSecretNamed(d: DeployDir, name: string | undefined): ISecret | undefined {
  return ofKind<ISecret>(d, 'Secret', (f) => f === SECRET_EXAMPLE).find((s) => s.metadata?.name === name);
}
function secretValue(secret: ISecret | undefined, key: string): string | undefined {
  const plain = secret?.stringData?.[key];
  if (plain !== undefined) return plain;
  const encoded = secret?.data?.[key];
  return encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
}

/** A port as a probe, a Service or a NetworkPolicy names it: a number, or a container port's name. */
function resolvePort(container: IContainer | undefined, port: string | number | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (port === undefined) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return container?.ports?.find((p) => p.name === port)?.containerPort;
}

interface PodEnv {
  /** What the process would see, with the example Secret's values for secret references. */
  env: Record<string, string>;
  /** Every name the manifests set: env entries, ConfigMap keys, example Secret keys. */
  names: string[];
  problems: string[];
}

/** The container's environment as the kubelet builds it: envFrom first, `env` entries over it. */
function podEnv(d: DeployDir): PodEnv {
  const container = containerOf(d);
  const env: Record<string, string> = {};
  const names: string[] = [];
  const problems: string[] = [];
  for (const source of container?.envFrom ?? []) {
    let data: Record<string, string> | undefined;
    if (source.configMapRef) {
      data = configMapNamed(d, source.configMapRef.name)?.data;
      if (!data) problems.push(`envFrom names a missing ConfigMap ${source.configMapRef.name ?? '?'}`);
    } else if (source.secretRef) {
      const secret = exampleSecretNamed(d, source.secretRef.name);
      const keys = Object.keys({ ...secret?.data, ...secret?.stringData });
      data = secret && Object.fromEntries(keys.map((k) => [k, secretValue(secret, k) ?? '']));
      if (!data) problems.push(`envFrom names a Secret ${source.secretRef.name ?? '?'} that ${SECRET_EXAMPLE} does not show`);
    }
    for (const [key, value] of Object.entries(data ?? {})) {
      env[(source.prefix ?? '') + key] = value;
      names.push((source.prefix ?? '') + key);
    }
  }
  for (const entry of container?.env ?? []) {
    names.push(entry.name);
    const secretRef = entry.valueFrom?.secretKeyRef;
    const configRef = entry.valueFrom?.configMapKeyRef;
    let value: string | undefined = entry.value;
    if (secretRef) {
      value = secretValue(exampleSecretNamed(d, secretRef.name), secretRef.key);
      if (value === undefined) problems.push(`${entry.name}: ${SECRET_EXAMPLE} has no Secret ${secretRef.name ?? '?'} with key ${secretRef.key}`);
    } else if (configRef) {
      value = configMapNamed(d, configRef.name)?.data?.[configRef.key];
      if (value === undefined) problems.push(`${entry.name}: no ConfigMap ${configRef.name ?? '?'} with key ${configRef.key}`);
    }
    if (value !== undefined) env[entry.name] = value;
  }
  return { env, names, problems };
}

/** The service configuration the pod would run with, or why it would not start. */
function podConfig(d: DeployDir): Config | string {
  try {
    return loadConfig(podEnv(d).env);
  } catch (error) {
    return (error as Error).message;
  }
}

/** Seconds of the container's preStop pause: the sleep handler, or `sleep N` run by exec. */
function preStopSeconds(container: IContainer | undefined): number | undefined {
  const preStop = container?.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const [program, seconds, ...rest] = preStop?.exec?.command ?? [];
  if (program && /^(\/(usr\/)?bin\/)?sleep$/.test(program) && seconds && /^\d+$/.test(seconds) && rest.length === 0) return Number(seconds);
  return undefined;
}

const probesOf = (c: IContainer | undefined): [string, IProbe | undefined][] => [
  ['startupProbe', c?.startupProbe],
  ['livenessProbe', c?.livenessProbe],
  ['readinessProbe', c?.readinessProbe],
];

function selects(selector: { matchLabels?: Record<string, string> } | undefined, labels: Record<string, string> | undefined): boolean {
  const wanted = Object.entries(selector?.matchLabels ?? {});
  return wanted.length > 0 && wanted.every(([k, v]) => labels?.[k] === v);
}

// ---------------------------------------------------------------------------------------------
// Checks

type Check = (d: DeployDir) => string | undefined;

const fail = (problems: string[]) => (problems.length === 0 ? undefined : problems.join('; '));

const checks: Record<string, Check> = {
  'every document is a known kind and validates against its Kubernetes schema': (d) => {
    if (d.manifests.length === 0) return 'no manifests';
    const problems: string[] = [];
    for (const m of d.manifests) {
      const validate = MODELS[kindOf(m)];
      if (!validate) {
        problems.push(`${where(m)}: no schema for ${kindOf(m)}`);
        continue;
      }
      try {
        validate(m.object);
      } catch (error) {
        problems.push(`${where(m)}: ${(error as Error).message}`);
      }
    }
    return fail(problems);
  },

  'every object is named, labelled app.kubernetes.io/name=agentgate, and names no namespace': (d) =>
    fail(
      d.manifests.flatMap((m) => {
        const meta = isRecord(m.object.metadata) ? m.object.metadata : {};
        const labels = isRecord(meta.labels) ? meta.labels : {};
        const problems: string[] = [];
        if (typeof meta.name !== 'string' || meta.name === '') problems.push(`${where(m)}: no metadata.name`);
        if (labels['app.kubernetes.io/name'] !== 'agentgate') problems.push(`${where(m)}: no label app.kubernetes.io/name=agentgate`);
        // The kustomization sets it; a manifest's own would win with plain `kubectl apply -f`.
        if (meta.namespace !== undefined) problems.push(`${where(m)}: sets metadata.namespace`);
        return problems;
      }),
    ),

  'the kustomization sets the namespace and lists existing files only': (d) => {
    const k = d.kustomization;
    const problems: string[] = [];
    if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') {
      problems.push(`${KUSTOMIZATION} is ${String(k.apiVersion)} ${String(k.kind)}`);
    }
    if (typeof k.namespace !== 'string' || k.namespace === '') problems.push('no namespace');
    const resources = Array.isArray(k.resources) ? k.resources.map(String) : [];
    if (resources.length === 0) problems.push('no resources');
    const missing = resources.filter((r) => !d.files.includes(r));
    if (missing.length > 0) problems.push(`lists missing file(s): ${missing.join(', ')}`);
    const twice = resources.filter((r, i) => resources.indexOf(r) !== i);
    if (twice.length > 0) problems.push(`lists twice: ${twice.join(', ')}`);
    return fail(problems);
  },

  'the kustomization applies every manifest but the Secret example': (d) => {
    const resources = Array.isArray(d.kustomization.resources) ? d.kustomization.resources.map(String) : [];
    const manifests = [...new Set(d.manifests.map((m) => m.file))];
    const left = manifests.filter((f) => f !== SECRET_EXAMPLE && !resources.includes(f));
    const problems = left.length > 0 ? [`not listed: ${left.join(', ')}`] : [];
    if (resources.includes(SECRET_EXAMPLE)) problems.push(`lists ${SECRET_EXAMPLE}, whose placeholders would replace the real Secret`);
    if (!manifests.includes(SECRET_EXAMPLE)) problems.push(`no ${SECRET_EXAMPLE}`);
    return fail(problems);
  },

  'the Deployment runs 2 replicas of the agentgate image of this version': (d) => {
    const deployment = deploymentOf(d);
    if (!deployment) return 'no Deployment';
    const problems: string[] = [];
    if (deployment.spec?.replicas !== 2) problems.push(`replicas: ${String(deployment.spec?.replicas)}`);
    const image = containerOf(d)?.image;
    if (image !== `agentgate:${version}`) problems.push(`image ${String(image)}, not agentgate:${version}`);
    return fail(problems);
  },

  'every selector selects the Deployment’s pods': (d) => {
    const deployment = deploymentOf(d);
    const labels = deployment?.spec?.template.metadata?.labels;
    const problems: string[] = [];
    if (!selects(deployment?.spec?.selector, labels)) problems.push('the Deployment’s selector');
    for (const s of ofKind<IService>(d, 'Service')) if (!selects({ matchLabels: s.spec?.selector }, labels)) problems.push(`Service ${String(s.metadata?.name)}`);
    for (const p of ofKind<IPodDisruptionBudget>(d, 'PodDisruptionBudget')) if (!selects(p.spec?.selector, labels)) problems.push(`PodDisruptionBudget ${String(p.metadata?.name)}`);
    for (const n of ofKind<INetworkPolicy>(d, 'NetworkPolicy')) if (!selects(n.spec?.podSelector, labels)) problems.push(`NetworkPolicy ${String(n.metadata?.name)}`);
    for (const t of podSpecOf(d)?.topologySpreadConstraints ?? []) if (!selects(t.labelSelector, labels)) problems.push(`spread constraint on ${t.topologyKey}`);
    return problems.length === 0 ? undefined : `does not select the pod template’s labels: ${problems.join(', ')}`;
  },

  'the HorizontalPodAutoscaler scales the Deployment on CPU, from 2 replicas': (d) => {
    const hpa = ofKind<IHorizontalPodAutoscaler>(d, 'HorizontalPodAutoscaler')[0];
    if (!hpa) return 'no HorizontalPodAutoscaler';
    const problems: string[] = [];
    const target = hpa.spec?.scaleTargetRef;
    if (target?.kind !== 'Deployment' || target.name !== deploymentOf(d)?.metadata?.name) problems.push(`scales ${String(target?.kind)} ${String(target?.name)}`);
    if ((hpa.spec?.minReplicas ?? 1) < 2) problems.push(`minReplicas ${String(hpa.spec?.minReplicas ?? 1)}`);
    if ((hpa.spec?.maxReplicas ?? 0) < (hpa.spec?.minReplicas ?? 1)) problems.push('maxReplicas below minReplicas');
    if (!hpa.spec?.metrics?.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu')) problems.push('no CPU metric');
    if (!containerOf(d)?.resources?.requests?.cpu) problems.push('a CPU utilization target needs a CPU request');
    return fail(problems);
  },

  'the PodDisruptionBudget keeps one replica available': (d) => {
    const pdb = ofKind<IPodDisruptionBudget>(d, 'PodDisruptionBudget')[0];
    if (!pdb) return 'no PodDisruptionBudget';
    return pdb.spec?.minAvailable === 1 ? undefined : `minAvailable ${String(pdb.spec?.minAvailable)}`;
  },

  'probes, the Service and the scrape annotation reach the container port, the PORT the service listens on': (d) => {
    const container = containerOf(d);
    const config = podConfig(d);
    if (typeof config === 'string') return config;
    const http = container?.ports?.find((p) => p.name === 'http');
    if (!http) return 'no container port named http';
    const problems: string[] = [];
    if (http.containerPort !== config.port) problems.push(`container port ${http.containerPort}, PORT ${config.port}`);
    for (const [name, probe] of probesOf(container)) {
      const port = resolvePort(container, probe?.httpGet?.port);
      if (probe && port !== config.port) problems.push(`${name} on port ${String(probe.httpGet?.port)}`);
    }
    for (const s of ofKind<IService>(d, 'Service')) {
      for (const p of s.spec?.ports ?? []) {
        const port = resolvePort(container, p.targetPort ?? p.port);
        if (port !== config.port) problems.push(`Service port ${p.port} → ${String(p.targetPort)}`);
      }
    }
    const annotated = deploymentOf(d)?.spec?.template.metadata?.annotations?.['prometheus.io/port'];
    if (annotated !== undefined && Number(annotated) !== config.port) problems.push(`prometheus.io/port ${annotated}`);
    return fail(problems);
  },

  'the pod’s environment passes the service configuration checks and listens on all interfaces': (d) => {
    const { problems } = podEnv(d);
    const config = podConfig(d);
    if (typeof config === 'string') problems.push(config);
    else if (config.host !== '0.0.0.0' && config.host !== '::') problems.push(`HOST ${config.host}: the Service could not reach it`);
    return fail(problems);
  },

  'every variable the manifests set is one the service knows': (d) => {
    const known = new Set([...Object.keys(ConfigSchema.properties), 'NODE_ENV']);
    const unknown = podEnv(d).names.filter((n) => !known.has(n) && !n.startsWith('OTEL_'));
    return unknown.length === 0 ? undefined : `unknown variable(s), silently ignored by the service: ${unknown.join(', ')}`;
  },

  'DATABASE_URL and the admin token come from the Secret, never from the ConfigMap': (d) => {
    const container = containerOf(d);
    const problems: string[] = [];
    for (const name of ['DATABASE_URL', 'AGENTGATE_ADMIN_TOKEN']) {
      const entry = container?.env?.find((e) => e.name === name);
      const ref = entry?.valueFrom?.secretKeyRef;
      if (!ref) problems.push(`${name} is not from a Secret`);
      else if (ref.optional === true) problems.push(`${name} is optional: without the Secret a replica would run an embedded database of its own`);
      for (const cm of ofKind<IConfigMap>(d, 'ConfigMap')) if (cm.data?.[name] !== undefined) problems.push(`ConfigMap ${String(cm.metadata?.name)} holds ${name}`);
    }
    return fail(problems);
  },

  'terminationGracePeriodSeconds exceeds the preStop pause plus AGENTGATE_SHUTDOWN_GRACE_MS': (d) => {
    const config = podConfig(d);
    if (typeof config === 'string') return config;
    const pause = preStopSeconds(containerOf(d));
    if (pause === undefined || pause <= 0) return 'no preStop pause: endpoints would still send traffic after SIGTERM';
    const grace = podSpecOf(d)?.terminationGracePeriodSeconds ?? 30;
    const needed = pause + config.shutdownGraceMs / 1000;
    return grace > needed ? undefined : `terminationGracePeriodSeconds ${grace}, not above ${pause} s pause + ${config.shutdownGraceMs / 1000} s drain`;
  },

  'startup, liveness (/healthz) and readiness (/readyz) probes': (d) => {
    const c = containerOf(d);
    const problems: string[] = [];
    for (const [name, probe] of probesOf(c)) if (!probe?.httpGet?.path) problems.push(`no HTTP ${name}`);
    if (c?.livenessProbe?.httpGet?.path !== '/healthz') problems.push(`liveness on ${String(c?.livenessProbe?.httpGet?.path)}`);
    if (c?.readinessProbe?.httpGet?.path !== '/readyz') problems.push(`readiness on ${String(c?.readinessProbe?.httpGet?.path)}`);
    return fail(problems);
  },

  'the container is locked down: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp': (d) => {
    const pod = podSpecOf(d);
    const c = containerOf(d)?.securityContext;
    const p = pod?.securityContext;
    const problems: string[] = [];
    // A container's own setting wins over the pod's.
    if ((c?.runAsNonRoot ?? p?.runAsNonRoot) !== true) problems.push('runAsNonRoot is not true');
    if ((c?.runAsUser ?? p?.runAsUser) !== 1000) problems.push(`runAsUser ${String(c?.runAsUser ?? p?.runAsUser)}, not 1000 (node)`);
    if (c?.readOnlyRootFilesystem !== true) problems.push('readOnlyRootFilesystem is not true');
    if (c?.allowPrivilegeEscalation !== false) problems.push('allowPrivilegeEscalation is not false');
    if (c?.privileged === true) problems.push('privileged');
    if (!c?.capabilities?.drop?.includes('ALL')) problems.push('capabilities do not drop ALL');
    if ((c?.capabilities?.add ?? []).length > 0) problems.push(`adds capabilities ${String(c?.capabilities?.add)}`);
    if ((c?.seccompProfile ?? p?.seccompProfile)?.type !== 'RuntimeDefault') problems.push('no RuntimeDefault seccomp profile');
    if (pod?.automountServiceAccountToken !== false) problems.push('the service account token is mounted');
    return fail(problems);
  },

  'a writable emptyDir at /tmp': (d) => {
    const mount = containerOf(d)?.volumeMounts?.find((m) => m.mountPath === '/tmp');
    const volume = podSpecOf(d)?.volumes?.find((v) => v.name === mount?.name);
    return mount && volume?.emptyDir && mount.readOnly !== true ? undefined : 'no writable emptyDir mounted at /tmp';
  },

  'CPU and memory requests and limits': (d) => {
    const r = containerOf(d)?.resources;
    const missing = (['requests', 'limits'] as const).flatMap((kind) => (['cpu', 'memory'] as const).filter((res) => !r?.[kind]?.[res]).map((res) => `${kind}.${res}`));
    return missing.length === 0 ? undefined : `missing ${missing.join(', ')}`;
  },

  'replicas spread over nodes': (d) => {
    const pod = podSpecOf(d);
    const spread = pod?.topologySpreadConstraints?.some((t) => t.topologyKey === 'kubernetes.io/hostname');
    const anti = [
      ...(pod?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []),
      ...(pod?.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.podAffinityTerm),
    ].some((t) => t.topologyKey === 'kubernetes.io/hostname');
    return spread || anti ? undefined : 'no topology spread or pod anti-affinity over kubernetes.io/hostname';
  },

  'the NetworkPolicy admits the service port and lets the gate reach DNS, PostgreSQL and agents': (d) => {
    const policy = ofKind<INetworkPolicy>(d, 'NetworkPolicy')[0];
    if (!policy) return 'no NetworkPolicy';
    const container = containerOf(d);
    const config = podConfig(d);
    if (typeof config === 'string') return config;
    const problems: string[] = [];
    const types = policy.spec?.policyTypes ?? [];
    if (!types.includes('Ingress') || !types.includes('Egress')) problems.push(`policyTypes ${types.join(', ')}`);
    const ingress = policy.spec?.ingress ?? [];
    if (ingress.length === 0) problems.push('no ingress rule: nothing could reach the gate');
    for (const rule of ingress) {
      const ports = (rule.ports ?? []).map((p) => resolvePort(container, p.port));
      if (!ports.includes(config.port)) problems.push(`an ingress rule does not admit port ${config.port}`);
    }
    const egress = policy.spec?.egress ?? [];
    const allows = (port: number, protocol: string) =>
      egress.some((r) => (r.ports ?? []).some((p) => resolvePort(container, p.port) === port && (p.protocol ?? 'TCP') === protocol));
    if (!allows(53, 'UDP') || !allows(53, 'TCP')) problems.push('no egress to DNS on 53/UDP and 53/TCP');
    const dbUrl = config.databaseUrl === undefined ? undefined : new URL(config.databaseUrl);
    const dbPort = Number(dbUrl?.port || 5432);
    if (!allows(dbPort, 'TCP')) problems.push(`no egress to PostgreSQL on ${dbPort}/TCP`);
    if (!egress.some((r) => (r.to ?? []).some((peer) => peer.ipBlock))) problems.push('no egress to an address range for agents');
    return fail(problems);
  },
};

// ---------------------------------------------------------------------------------------------

const real = loadDeployDir();

/** A copy of the real manifests with `edit` applied to the first object of `kind`. */
function mutated(kind: string, edit: (object: Record<string, unknown>) => void, file?: string): DeployDir {
  const copy = structuredClone(real);
  const target = copy.manifests.find((m) => m.object.kind === kind && (file === undefined || m.file === file));
  if (!target) throw new Error(`no ${kind} to mutate`);
  edit(target.object);
  return copy;
}
// why: mutations edit YAML-shaped data at known paths; the checks read it back through types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const deploy = (edit: (o: any) => void) => mutated('Deployment', edit);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const container = (edit: (c: any) => void) => deploy((o) => edit(o.spec.template.spec.containers[0]));
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const configMap = (edit: (data: any) => void) => mutated('ConfigMap', (o) => edit(o.data));

// The check each mutation must trip, by the start of its name.
const check = (prefix: string): string => {
  const names = Object.keys(checks).filter((n) => n.startsWith(prefix));
  if (names.length !== 1) throw new Error(`${names.length} checks start with ${JSON.stringify(prefix)}`);
  return names[0]!;
};
const SCHEMA = check('every document is a known kind');
const META = check('every object is named');
const KUSTOMIZE_FILES = check('the kustomization sets');
const KUSTOMIZE_ALL = check('the kustomization applies');
const REPLICAS = check('the Deployment runs');
const SELECTORS = check('every selector');
const HPA = check('the HorizontalPodAutoscaler');
const PDB = check('the PodDisruptionBudget');
const PORTS = check('probes, the Service');
const ENV = check('the pod’s environment');
const NAMES = check('every variable');
const SECRETS = check('DATABASE_URL and the admin token');
const GRACE = check('terminationGracePeriodSeconds');
const PROBES = check('startup, liveness');
const LOCKED = check('the container is locked down');
const TMP = check('a writable emptyDir');
const RESOURCES = check('CPU and memory');
const SPREAD = check('replicas spread');
const NETPOL = check('the NetworkPolicy');

const envEntry = (c: { env: IEnvVar[] }, name: string): IEnvVar => c.env.find((e) => e.name === name)!;
const withResources = (edit: (resources: string[]) => string[]) => () => {
  const copy = structuredClone(real);
  copy.kustomization.resources = edit([...(copy.kustomization.resources as string[])]);
  return copy;
};

const mutations: { what: string; check: string; dir: () => DeployDir }[] = [
  { what: 'a container port as a string', check: SCHEMA, dir: () => container((c) => (c.ports[0].containerPort = 'eighty')) },
  { what: 'replicas as a string', check: SCHEMA, dir: () => deploy((o) => (o.spec.replicas = 'two')) },
  { what: 'an unknown kind', check: SCHEMA, dir: () => mutated('Service', (o) => (o.kind = 'Ingress')) },
  { what: 'a retired apiVersion', check: SCHEMA, dir: () => mutated('HorizontalPodAutoscaler', (o) => (o.apiVersion = 'autoscaling/v2beta2')) },
  { what: 'a manifest with a namespace', check: META, dir: () => mutated('Service', (o) => ((o.metadata as Record<string, unknown>).namespace = 'default')) },
  { what: 'a manifest without the name label', check: META, dir: () => mutated('ConfigMap', (o) => ((o.metadata as Record<string, unknown>).labels = {})) },
  { what: 'a kustomization listing a missing file', check: KUSTOMIZE_FILES, dir: withResources((r) => [...r, 'ingress.yaml']) },
  { what: 'a manifest left out of the kustomization', check: KUSTOMIZE_ALL, dir: withResources((r) => r.filter((f) => f !== 'networkpolicy.yaml')) },
  { what: 'the Secret example in the kustomization', check: KUSTOMIZE_ALL, dir: withResources((r) => [...r, SECRET_EXAMPLE]) },
  { what: 'one replica', check: REPLICAS, dir: () => deploy((o) => (o.spec.replicas = 1)) },
  { what: 'an image of another version', check: REPLICAS, dir: () => container((c) => (c.image = 'agentgate:latest')) },
  {
    what: 'a Service selecting other pods',
    check: SELECTORS,
    dir: () => mutated('Service', (o) => ((o.spec as Record<string, unknown>).selector = { 'app.kubernetes.io/name': 'agentgat' })),
  },
  {
    what: 'a PodDisruptionBudget selecting other pods',
    check: SELECTORS,
    dir: () => mutated('PodDisruptionBudget', (o) => ((o.spec as Record<string, unknown>).selector = { matchLabels: { app: 'agentgate' } })),
  },
  {
    what: 'an autoscaler of another Deployment',
    check: HPA,
    dir: () => mutated('HorizontalPodAutoscaler', (o) => ((o.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name = 'gate')),
  },
  { what: 'an autoscaler going down to 1', check: HPA, dir: () => mutated('HorizontalPodAutoscaler', (o) => ((o.spec as Record<string, unknown>).minReplicas = 1)) },
  { what: 'a budget allowing no disruption', check: PDB, dir: () => mutated('PodDisruptionBudget', (o) => ((o.spec as Record<string, unknown>).minAvailable = 2)) },
  { what: 'PORT unlike the container port', check: PORTS, dir: () => container((c) => (envEntry(c, 'PORT').value = '3000')) },
  { what: 'a probe on another port', check: PORTS, dir: () => container((c) => (c.readinessProbe.httpGet.port = 9090)) },
  { what: 'a probe on a port name that does not exist', check: PORTS, dir: () => container((c) => (c.startupProbe.httpGet.port = 'web')) },
  {
    what: 'a Service targeting another port',
    check: PORTS,
    dir: () => mutated('Service', (o) => ((o.spec as { ports: { targetPort: unknown }[] }).ports[0]!.targetPort = 8081)),
  },
  { what: 'a scrape annotation on another port', check: PORTS, dir: () => deploy((o) => (o.spec.template.metadata.annotations['prometheus.io/port'] = '9102')) },
  { what: 'a ConfigMap value the service refuses', check: ENV, dir: () => configMap((data) => (data.AGENTGATE_DIAL_TIMEOUT_MS = '30s')) },
  { what: 'HOST on loopback', check: ENV, dir: () => container((c) => (envEntry(c, 'HOST').value = '127.0.0.1')) },
  { what: 'envFrom naming a missing ConfigMap', check: ENV, dir: () => container((c) => (c.envFrom[0].configMapRef.name = 'agentgate-config')) },
  { what: 'a misspelt variable in the ConfigMap', check: NAMES, dir: () => configMap((data) => (data.AGENTGATE_DIAL_TIMEOUT = '1000')) },
  { what: 'a misspelt variable in env', check: NAMES, dir: () => container((c) => void c.env.push({ name: 'LOGLEVEL', value: 'debug' })) },
  { what: 'DATABASE_URL in the ConfigMap', check: SECRETS, dir: () => configMap((data) => (data.DATABASE_URL = 'postgres://x@db/agentgate')) },
  {
    what: 'an optional DATABASE_URL',
    check: SECRETS,
    dir: () => container((c) => (envEntry(c, 'DATABASE_URL').valueFrom!.secretKeyRef!.optional = true)),
  },
  {
    what: 'the admin token as a literal',
    check: SECRETS,
    dir: () => container((c) => Object.assign(envEntry(c, 'AGENTGATE_ADMIN_TOKEN'), { valueFrom: undefined, value: 'a-literal-admin-token-0123456789' })),
  },
  { what: 'a drain longer than the grace period', check: GRACE, dir: () => configMap((data) => (data.AGENTGATE_SHUTDOWN_GRACE_MS = '30000')) },
  { what: 'a grace period that forgets the pause', check: GRACE, dir: () => deploy((o) => (o.spec.template.spec.terminationGracePeriodSeconds = 25)) },
  { what: 'no preStop pause', check: GRACE, dir: () => container((c) => delete c.lifecycle) },
  { what: 'liveness on /readyz', check: PROBES, dir: () => container((c) => (c.livenessProbe.httpGet.path = '/readyz')) },
  { what: 'no startup probe', check: PROBES, dir: () => container((c) => delete c.startupProbe) },
  { what: 'a writable root filesystem', check: LOCKED, dir: () => container((c) => (c.securityContext.readOnlyRootFilesystem = false)) },
  { what: 'privilege escalation allowed', check: LOCKED, dir: () => container((c) => delete c.securityContext.allowPrivilegeEscalation) },
  { what: 'root', check: LOCKED, dir: () => container((c) => (c.securityContext.runAsUser = 0)) },
  { what: 'capabilities kept', check: LOCKED, dir: () => container((c) => (c.securityContext.capabilities = { drop: ['NET_RAW'] })) },
  {
    what: 'no seccomp profile',
    check: LOCKED,
    dir: () =>
      deploy((o) => {
        delete o.spec.template.spec.securityContext.seccompProfile;
        delete o.spec.template.spec.containers[0].securityContext.seccompProfile;
      }),
  },
  { what: 'a mounted service account token', check: LOCKED, dir: () => deploy((o) => delete o.spec.template.spec.automountServiceAccountToken) },
  { what: 'no /tmp volume', check: TMP, dir: () => container((c) => (c.volumeMounts = [])) },
  { what: 'no memory limit', check: RESOURCES, dir: () => container((c) => delete c.resources.limits.memory) },
  { what: 'no spreading', check: SPREAD, dir: () => deploy((o) => delete o.spec.template.spec.topologySpreadConstraints) },
  {
    what: 'an ingress rule on another port',
    check: NETPOL,
    dir: () => mutated('NetworkPolicy', (o) => ((o.spec as { ingress: { ports: { port: unknown }[] }[] }).ingress[0]!.ports[0]!.port = 80)),
  },
  { what: 'no DNS over TCP', check: NETPOL, dir: () => mutated('NetworkPolicy', (o) => void (o.spec as { egress: { ports: unknown[] }[] }).egress[0]!.ports.pop()) },
  {
    what: 'a database on another port',
    check: NETPOL,
    dir: () => mutated('Secret', (o) => ((o.stringData as Record<string, string>).DATABASE_URL = 'postgres://agentgate:x@postgresql:6432/agentgate'), SECRET_EXAMPLE),
  },
  { what: 'ingress only', check: NETPOL, dir: () => mutated('NetworkPolicy', (o) => ((o.spec as Record<string, unknown>).policyTypes = ['Ingress'])) },
];

describe('deploy/kubernetes, read as files', () => {
  it('every YAML file parses', () => {
    const files = real.files.filter((f) => /\.ya?ml$/.test(f));
    expect(files).toContain(KUSTOMIZATION);
    expect(files).toContain(SECRET_EXAMPLE);
    for (const file of files) expect(() => parseYamlFile(file, readFileSync(path.join(root, DIR, file), 'utf8'))).not.toThrow();
    expect(() => parseYamlFile('broken.yaml', 'kind: Service\n  metadata: [\n')).toThrow(/broken\.yaml/);
  });

  it.each(Object.keys(checks))('%s', (name) => {
    expect(checks[name]?.(real)).toBeUndefined();
  });

  it('every check is exercised by at least one mutation', () => {
    const covered = new Set(mutations.map((m) => m.check));
    expect(Object.keys(checks).filter((c) => !covered.has(c))).toEqual([]);
    expect(mutations.filter((m) => !(m.check in checks)).map((m) => m.check)).toEqual([]);
  });

  it.each(mutations.map((m) => [m.what, m] as const))('rejects %s', (_what, m) => {
    expect(checks[m.check]?.(m.dir())).toEqual(expect.any(String));
  });
});

// ---------------------------------------------------------------------------------------------
// Against the app itself

/** The paths the kubelet and Prometheus request: the probes' and the scrape annotation's. */
function requestedPaths(d: DeployDir): string[] {
  const paths = probesOf(containerOf(d)).flatMap(([, p]) => (p?.httpGet?.path ? [p.httpGet.path] : []));
  const scrape = deploymentOf(d)?.spec?.template.metadata?.annotations?.['prometheus.io/path'];
  if (scrape) paths.push(scrape);
  return [...new Set(paths)];
}

/** Paths of `d` that the app does not answer with 200. */
async function unanswered(t: TestApp, d: DeployDir): Promise<string[]> {
  const bad: string[] = [];
  for (const p of requestedPaths(d)) {
    const r = await t.call('GET', p);
    if (r.status !== 200) bad.push(`${p} → ${r.status}`);
  }
  return bad;
}

/** The pod's environment minus what the test database and token replace. */
function appEnv(d: DeployDir): Record<string, string> {
  const { DATABASE_URL: _db, AGENTGATE_ADMIN_TOKEN: _token, ...rest } = podEnv(d).env;
  return rest;
}

describe('deploy/kubernetes, against the app built from it', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: appEnv(real) });
  });
  afterAll(async () => {
    await t.close();
  });

  it('the app runs with the ConfigMap’s values', () => {
    expect(t.config.shutdownGraceMs).toBe(Number(configMapNamed(real, 'agentgate')?.data?.AGENTGATE_SHUTDOWN_GRACE_MS));
    expect(t.config.dialTimeoutMs).toBe(Number(configMapNamed(real, 'agentgate')?.data?.AGENTGATE_DIAL_TIMEOUT_MS));
  });

  it('every probe path and the metrics path answer 200', async () => {
    expect(requestedPaths(real)).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/metrics']));
    expect(await unanswered(t, real)).toEqual([]);
  });

  it('a probe on a path the app does not serve is caught', async () => {
    const wrong = structuredClone(real);
    const c = containerOf(wrong);
    if (c?.livenessProbe?.httpGet) c.livenessProbe.httpGet.path = '/livez';
    expect(await unanswered(t, wrong)).toEqual(['/livez → 404']);
  });

  it('readiness goes 503 once the replica drains, so that its endpoint is withdrawn', async () => {
    const path = containerOf(real)?.readinessProbe?.httpGet?.path ?? '';
    t.lifecycle.startDraining();
    const r = await t.call('GET', path);
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ code: 'NOT_READY' });
    expect((await t.call('GET', containerOf(real)?.livenessProbe?.httpGet?.path ?? '')).status).toBe(200);
  });
});

describe('two replicas starting together on an empty database', () => {
  const serverUrl = inject('serverUrl');
  const name = `agentgate_t_${inject('runId')}_k8s_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  beforeAll(async () => {
    await admin(`create database ${name}`);
  });
  afterAll(async () => {
    await admin(`drop database if exists ${name} with (force)`);
  });

  it('one applies the migrations under the migrator’s lock, the other finds them applied; both become ready', async () => {
    const url = withDatabase(serverUrl, name);
    const database: TestDatabase = {
      name,
      url,
      serverUrl,
      open: (options = {}) => openDatabase({ url: options.url ?? url, timeoutMs: options.timeoutMs ?? 2_000, onPoolError: () => undefined }),
      drop: () => Promise.resolve(),
    };
    const env = appEnv(real);
    const started = await Promise.allSettled([startTestApp({ database, env }), startTestApp({ database, env })]);
    const replicas = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    try {
      expect(started.map((s) => (s.status === 'rejected' ? String(s.reason) : 'started'))).toEqual(['started', 'started']);
      const applied = replicas.map((r) =>
        r.logs
          .map((line) => JSON.parse(line) as { msg?: string; migrations?: string[] })
          .filter((entry) => entry.msg === 'migrations applied')
          .flatMap((entry) => entry.migrations ?? []),
      );
      const [first = [], second = []] = [...applied].sort((a, b) => b.length - a.length);
      expect(first.length).toBeGreaterThan(0);
      expect(second).toEqual([]);
      for (const r of replicas) expect((await r.call('GET', '/readyz')).status).toBe(200);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });
});

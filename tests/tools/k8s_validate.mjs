// k8s_validate.mjs MODULES_DIR [--policy FILE] MANIFEST...
//
// Validates every YAML document of every MANIFEST against the official
// Kubernetes OpenAPI schemas (npm kubernetes-models) and cert-manager's CRD
// schemas (@kubernetes-models/cert-manager), installed in MODULES_DIR from
// tests/tools/k8s-validate/package.json. One line per document:
//   valid FILE#N Kind/name
//   invalid FILE#N Kind/name: /json/pointer message ...
// A kind with no model is invalid (nothing passes unvalidated). The models
// accept unknown fields (the OpenAPI schemas do not forbid them), so this
// also rejects them, as `kubectl apply --validate=strict` would: the schema
// validator runs on a Proxy of the document that records which fields it
// looks at, and a field it never looks at is one the schema does not have.
//
// --policy FILE adds Keyhold's own checks: the keyhold-policy ConfigMap holds
// FILE verbatim, and a pod template with a keyholdd init container runs it as
// a hardened native sidecar whose uids and gid agree with FILE.
// Exit 0 if every document is valid, 1 if not, 2 on a usage error.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const modulesDir = args.shift();
let policyFile = null;
if (args[0] === '--policy') { args.shift(); policyFile = args.shift(); }
if (!modulesDir || args.length === 0) {
  console.error('usage: k8s_validate.mjs MODULES_DIR [--policy FILE] MANIFEST...');
  process.exit(2);
}
const require = createRequire(join(modulesDir, 'package.json'));
const YAML = require('yaml');

// API groups that are not Kubernetes' own, and the package with their models.
const groupPackages = { 'cert-manager.io': '@kubernetes-models/cert-manager' };

function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || !/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion))
    return null;
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  let mod;
  try {
    mod = require(`${groupPackages[group] ?? 'kubernetes-models'}/${apiVersion}`);
  } catch {
    return null;
  }
  const M = mod[kind];
  return typeof M === 'function' && M.kind === kind && M.apiVersion === apiVersion ? M : null;
}

// schemaErrors: the schema's errors for |doc|, then its unknown fields.
function schemaErrors(M, doc) {
  const reads = new WeakMap(); // object -> the keys the validator read
  const proxies = new WeakMap();
  const watch = (v) => {
    if (v === null || typeof v !== 'object') return v;
    if (!proxies.has(v))
      proxies.set(v, new Proxy(v, {
        get(t, k, r) {
          if (typeof k === 'string') {
            if (!reads.has(t)) reads.set(t, new Set());
            reads.get(t).add(k);
          }
          const x = Reflect.get(t, k, r);
          return typeof k === 'string' && Object.hasOwn(t, k) ? watch(x) : x;
        },
      }));
    return proxies.get(v);
  };
  const errs = [];
  try {
    M.prototype.validate.call(watch(doc)); // the model's validate(), on the document itself
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    for (const x of e.errors)
      errs.push(`${x.instancePath || '/'} ${x.message}` +
        (x.params?.allowedValues ? ` (${x.params.allowedValues.join(', ')})` : ''));
  }
  const walk = (v, path) => {
    const read = v !== null && typeof v === 'object' && reads.get(v);
    if (!read) return; // a free-form value: the validator looked at no key in it
    for (const [k, x] of Object.entries(v)) {
      if (Array.isArray(v) || read.has(k)) walk(x, `${path}/${k}`);
      else errs.push(`${path}/${k} unknown field`);
    }
  };
  walk(doc, '');
  return [...new Set(errs)];
}

// Keyhold's checks on the validated documents (--policy).
function keyholdChecks(docs, policyText) {
  const policy = YAML.parse(policyText);
  const out = [];
  const need = (ok, what) => { if (!ok) out.push(what); };
  const probeCmd = JSON.stringify(['/usr/bin/keyhold', 'health', '--sidecar', policy.socket.path]);
  for (const { doc, where } of docs) {
    if (doc.kind === 'ConfigMap' && doc.metadata?.name === 'keyhold-policy')
      need(doc.data?.['policy.yaml'] === policyText, `${where}: data["policy.yaml"] differs from ${policyFile}`);
    const pod = doc.kind === 'Pod' ? doc.spec : doc.spec?.template?.spec;
    const kd = pod?.initContainers?.find((c) => c.name === 'keyholdd');
    if (!kd) continue;
    const sc = kd.securityContext ?? {};
    const p = (m) => `${where}: keyholdd ${m}`;
    need(kd.restartPolicy === 'Always', p('is not a native sidecar (restartPolicy: Always)'));
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'])
      need(JSON.stringify(kd[probe]?.exec?.command) === probeCmd, p(`${probe} is not exec ${probeCmd}`));
    need(kd.resources?.requests && kd.resources?.limits, p('has no resource requests and limits'));
    need(sc.readOnlyRootFilesystem === true, p('root filesystem is not read-only'));
    need(sc.runAsNonRoot === true && sc.allowPrivilegeEscalation === false, p('may run as root or escalate'));
    need(JSON.stringify(sc.capabilities?.drop) === '["ALL"]', p('keeps capabilities (drop: [ALL])'));
    need((sc.seccompProfile ?? pod.securityContext?.seccompProfile)?.type === 'RuntimeDefault',
      p('has no RuntimeDefault seccomp profile'));
    need(String(pod.securityContext?.fsGroup) === String(policy.socket.group),
      `${where}: fsGroup is not the policy's socket.group ${policy.socket.group}`);
    const sockDir = policy.socket.path.replace(/\/[^/]+$/, '');
    const sockVol = kd.volumeMounts?.find((m) => m.mountPath === sockDir)?.name;
    need(pod.volumes?.find((v) => v.name === sockVol)?.emptyDir, p(`does not have ${sockDir} on an emptyDir`));
    need(kd.volumeMounts?.some((m) => m.mountPath.startsWith(policy.identities_dir + '/')),
      p(`mounts no identity under identities_dir ${policy.identities_dir}`));
    const uids = Object.values(policy.identities).flatMap((i) => i.callers?.uids ?? []);
    for (const c of pod.containers ?? []) {
      const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
      need(c.volumeMounts?.some((m) => m.name === sockVol && m.mountPath === sockDir),
        `${where}: container ${c.name} does not mount the socket directory ${sockDir}`);
      need(uids.includes(uid), `${where}: container ${c.name} uid ${uid} is in no callers.uids of the policy`);
    }
  }
  return out;
}

let bad = 0;
const valid = [];
for (const file of args) {
  let parsed;
  try {
    parsed = YAML.parseAllDocuments(readFileSync(file, 'utf8'), { version: '1.1' }); // as Kubernetes reads YAML
  } catch (e) {
    console.log(`invalid ${file}: ${e.message}`);
    bad++;
    continue;
  }
  parsed.forEach((d, i) => {
    let where = `${file}#${i + 1}`;
    if (d.errors.length) {
      console.log(`invalid ${where}: ${d.errors.map((e) => e.message).join('; ')}`);
      bad++;
      return;
    }
    const doc = d.toJS();
    if (doc === null) return; // an empty document (a trailing ---)
    where += ` ${doc?.kind}/${doc?.metadata?.name}`;
    const M = modelFor(doc?.apiVersion, doc?.kind);
    const errs = M ? schemaErrors(M, doc) : [`no schema for apiVersion ${doc?.apiVersion} kind ${doc?.kind}`];
    if (errs.length) {
      console.log(`invalid ${where}: ${errs.join('; ')}`);
      bad++;
    } else {
      console.log(`valid ${where}`);
      valid.push({ doc, where });
    }
  });
}
if (policyFile) {
  for (const e of keyholdChecks(valid, readFileSync(policyFile, 'utf8'))) {
    console.log(`invalid ${e}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);

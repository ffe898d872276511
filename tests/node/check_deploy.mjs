// Structural checks of deploy/docker and deploy/kubernetes, parsed with the `yaml` package
// (pinned in package.json): what a `docker compose config` or `kubectl apply --dry-run` would
// read, and how the pieces must agree (ports, mounts, the config file's paths). Docker and a
// cluster cannot run here; tests/deploy/*.sh run the real server and nginx with these files.
//
//   node check_deploy.mjs SOURCE_DIR kubernetes            deploy/kubernetes; exit 1 on a failure
//   node check_deploy.mjs SOURCE_DIR docker                deploy/docker (Dockerfile, compose)
//   node check_deploy.mjs SOURCE_DIR configmap-conf        prints the ConfigMap's config file
//   node check_deploy.mjs SOURCE_DIR runtime-packages      the Dockerfile runtime stage's packages
//   node check_deploy.mjs SOURCE_DIR build-copies          what the build stage COPYs from the
//                                                          context, one path a line
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

const [source, mode] = process.argv.slice(2);
const modes = ['kubernetes', 'docker', 'configmap-conf', 'runtime-packages', 'build-copies'];
if (!source || !modes.includes(mode)) {
  console.error(`usage: check_deploy.mjs SOURCE_DIR ${modes.join('|')}`);
  process.exit(2);
}
const deploy = path.join(source, 'deploy');

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
function check(ok, message) {
  if (!ok) fail(message);
}
function step(message) {
  console.log(`--- ${message}`);
}

// Every YAML document of a file; a syntax error or warning fails.
function parseAll(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), {prettyErrors: true});
  for (const doc of docs) {
    check(doc.errors.length === 0, `${file}: ${doc.errors.map(String).join('; ')}`);
    check(doc.warnings.length === 0, `${file}: ${doc.warnings.map(String).join('; ')}`);
  }
  return docs.map((d) => d.toJS()).filter((d) => d !== null);
}

// The config file grammar of Flags::ParseFile: `name = value` or `name value`, # comments.
function parseConf(text) {
  const options = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([^\s=]+)\s*(?:=\s*|\s+)?(.*)$/.exec(line);
    options.set(m[1], m[2]);
  }
  return options;
}
const portOf = (hostPort) => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));

function kubernetes() {
  const dir = path.join(deploy, 'kubernetes');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  const objects = [];
  for (const f of files) {
    for (const o of parseAll(path.join(dir, f))) objects.push({...o, file: f});
  }
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const one = (kind) => {
    const found = byKind(kind);
    check(found.length === 1, `want one ${kind} in deploy/kubernetes, have ${found.length}`);
    return found[0];
  };
  return {files, objects, byKind, one};
}

function configMapConf(k8s) {
  const cm = k8s.one('ConfigMap');
  const keys = Object.keys(cm.data ?? {});
  check(keys.length === 1, `the ConfigMap holds ${keys.length} files, want the config only`);
  return {key: keys[0], text: cm.data[keys[0]], name: cm.metadata.name};
}

function checkKubernetes() {
  const k8s = kubernetes();
  step(`deploy/kubernetes: ${k8s.files.join(', ')} parse`);
  const kustomization = k8s.one('Kustomization');
  check(
      JSON.stringify([...kustomization.resources].sort()) ===
          JSON.stringify(k8s.files.filter((f) => f !== kustomization.file)),
      `kustomization.yaml lists ${kustomization.resources}, the folder has ${k8s.files}`);
  for (const o of k8s.objects) {
    check(o.apiVersion && o.kind && (o.kind === 'Kustomization' || o.metadata?.name),
          `${o.file}: an object without apiVersion, kind or metadata.name`);
  }

  const sts = k8s.one('StatefulSet');
  const svc = k8s.one('Service');
  const secret = k8s.one('Secret');
  const {key: confKey, text: confText, name: cmName} = configMapConf(k8s);
  const conf = parseConf(confText);
  const pod = sts.spec.template.spec;
  check(pod.containers.length === 1, 'want one container');
  const c = pod.containers[0];

  step('labels: the StatefulSet selects its pods, the Service selects them too');
  const labels = sts.spec.template.metadata.labels;
  for (const [k, v] of Object.entries(sts.spec.selector.matchLabels)) {
    check(labels[k] === v, `StatefulSet selector ${k}=${v} does not match the pod labels`);
  }
  for (const [k, v] of Object.entries(svc.spec.selector)) {
    check(labels[k] === v, `Service selector ${k}=${v} does not match the pod labels`);
  }
  check(sts.spec.serviceName === svc.metadata.name, 'serviceName is not the Service');

  step('ports: the config listens where the container, probes and Service say');
  const ports = new Map(c.ports.map((p) => [p.name, p.containerPort]));
  check(ports.get('grpc') === portOf(conf.get('listen') ?? ''),
        `container port grpc ${ports.get('grpc')}, config listen ${conf.get('listen')}`);
  check(ports.get('http') === portOf(conf.get('http-listen') ?? ''),
        `container port http ${ports.get('http')}, config http-listen ${conf.get('http-listen')}`);
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const p = c[probe];
    check(p, `no ${probe}`);
    if (p.grpc) {
      check(p.grpc.port === ports.get('grpc'), `${probe}: grpc port ${p.grpc.port} is not grpc's`);
    } else {
      check(p.httpGet && ['/healthz', '/readyz'].includes(p.httpGet.path),
            `${probe}: neither grpc nor httpGet /healthz or /readyz`);
      const port = p.httpGet.port;
      check(port === 'http' || port === ports.get('http'), `${probe}: not the http port`);
    }
  }
  for (const sp of svc.spec.ports) {
    check(ports.has(sp.targetPort) || [...ports.values()].includes(sp.targetPort),
          `Service port ${sp.name}: targetPort ${sp.targetPort} is no container port`);
  }

  // The path a volume mount makes of `file` (mountPath/key), or null.
  const mounted = (volumeName) => c.volumeMounts.filter((m) => m.name === volumeName);
  const volume = (pred) => pod.volumes.find(pred);

  step('the config file is the ConfigMap, mounted where --config points');
  const configArg = c.args[c.args.indexOf('--config') + 1];
  check(c.args.includes('--config') && configArg, 'the container has no --config FILE');
  const cmVolume = volume((v) => v.configMap?.name === cmName);
  check(cmVolume, `no volume of ConfigMap ${cmName}`);
  check(mounted(cmVolume.name).some((m) => `${m.mountPath}/${confKey}` === configArg ||
                                        (m.subPath === confKey && m.mountPath === configArg)),
        `--config ${configArg} is not where ConfigMap key ${confKey} is mounted`);

  step('the data dir is the volumeClaimTemplate');
  const claim = sts.spec.volumeClaimTemplates.map((t) => t.metadata.name);
  check(claim.length === 1, 'want one volumeClaimTemplate');
  const dataMounts = mounted(claim[0]);
  check(dataMounts.length === 1 && dataMounts[0].mountPath === conf.get('data-dir'),
        `data-dir ${conf.get('data-dir')} is not the mount of claim ${claim[0]}`);
  check(!dataMounts[0].readOnly, 'the data volume is mounted read-only');

  step('the admin token is the Secret, mounted where admin-token-file points');
  const tokenFile = c.args.includes('--admin-token-file') ?
      c.args[c.args.indexOf('--admin-token-file') + 1] :
      conf.get('admin-token-file');
  const secretVolume = volume((v) => v.secret?.secretName === secret.metadata.name);
  check(secretVolume, `no volume of Secret ${secret.metadata.name}`);
  const secretKeys = Object.keys({...secret.data, ...secret.stringData});
  check(mounted(secretVolume.name).some((m) => secretKeys.some((k) =>
                                            `${m.mountPath}/${k}` === tokenFile)),
        `admin-token-file ${tokenFile} is not a key of the mounted Secret (${secretKeys})`);
  const placeholder = secret.stringData?.[secretKeys[0]] ?? '';
  check(placeholder.length < 16,
        'the Secret ships a token the server would accept: keep the placeholder too short');

  step('non-root, read-only root file system, no privileges');
  const psc = pod.securityContext ?? {};
  const csc = c.securityContext ?? {};
  check((csc.runAsNonRoot ?? psc.runAsNonRoot) === true, 'runAsNonRoot is not true');
  check((csc.runAsUser ?? psc.runAsUser) > 0, 'runAsUser is root or unset');
  check(csc.readOnlyRootFilesystem === true, 'readOnlyRootFilesystem is not true');
  check(csc.allowPrivilegeEscalation === false, 'allowPrivilegeEscalation is not false');
  check(JSON.stringify(csc.capabilities?.drop) === '["ALL"]', 'capabilities are not all dropped');
  check(psc.fsGroup === (csc.runAsGroup ?? psc.runAsGroup),
        'fsGroup is not the group: the volumes would not be writable');
  check(c.volumeMounts.some((m) => m.mountPath === '/tmp'), 'no writable /tmp');
}

// The Dockerfile as stages of [instruction, argument] (continuations joined, comments dropped).
function dockerfile() {
  const text = fs.readFileSync(path.join(deploy, 'docker', 'Dockerfile'), 'utf8')
                   .replace(/\\\n(\s*#[^\n]*\n)*/g, ' ');
  const stages = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [, op, arg] = /^(\S+)\s+(.*)$/.exec(line);
    if (op.toUpperCase() === 'FROM') stages.push({from: arg, steps: []});
    else stages[stages.length - 1].steps.push([op.toUpperCase(), arg.trim()]);
  }
  return stages;
}

function runtimePackages(stages) {
  const run = stages[stages.length - 1].steps.find(([op, arg]) => op === 'RUN' &&
                                                   arg.includes('apt-get install'));
  check(run, 'the runtime stage installs no packages');
  return run[1].split('apt-get install')[1].split('&&')[0].split(/\s+/)
      .filter((w) => w && !w.startsWith('-'));
}

// The context paths a stage COPYs (not those COPY --from another stage).
function copiedSources(stage) {
  return stage.steps.filter(([op, arg]) => op === 'COPY' && !arg.startsWith('--from'))
      .flatMap(([, arg]) => arg.split(/\s+/).slice(0, -1));
}

function checkDocker() {
  step('deploy/docker/Dockerfile: two stages on Debian 12');
  const stages = dockerfile();
  check(stages.length === 2, `want a build and a runtime stage, have ${stages.length}`);
  check(/^debian:12(\s|$)/.test(stages[0].from) && / AS build$/i.test(stages[0].from),
        `the build stage is FROM ${stages[0].from}`);
  check(stages[1].from === 'debian:12-slim', `the runtime stage is FROM ${stages[1].from}`);
  const final = stages[1].steps;
  const ops = (name) => final.filter(([op]) => op === name).map(([, arg]) => arg);

  step('COPY sources exist in the build context (the repository)');
  for (const src of stages.flatMap(copiedSources)) {
    check(fs.existsSync(path.join(source, src)), `COPY ${src}: no such file in ${source}`);
  }
  const binaries = ops('COPY').filter((a) => a.startsWith('--from=build'))
                       .map((a) => a.split(/\s+/).pop());

  step('runs as a non-root user, with a health check, the data dir a volume');
  const user = ops('USER').pop() ?? 'root';
  check(!/^(root|0)(:|$)/.test(user), `the runtime stage runs as ${user}`);
  const health = ops('HEALTHCHECK');
  check(health.length === 1, 'no HEALTHCHECK');
  const conf = parseConf(fs.readFileSync(path.join(deploy, 'modeldist-server.conf'), 'utf8'));
  check(health[0].includes(`127.0.0.1:${portOf(conf.get('http-listen'))}/healthz`),
        `the HEALTHCHECK does not GET /healthz on http-listen ${conf.get('http-listen')}`);
  check(ops('VOLUME').some((v) => v.includes(conf.get('data-dir'))),
        `no VOLUME for data-dir ${conf.get('data-dir')}`);
  const entrypoint = JSON.parse(ops('ENTRYPOINT').pop());
  check(binaries.includes(entrypoint[0]), `ENTRYPOINT ${entrypoint[0]} is not copied from build`);
  check(entrypoint.includes('--config'), 'the ENTRYPOINT reads no --config');
  check(ops('COPY').some((a) => a.split(/\s+/).pop() === entrypoint[entrypoint.indexOf('--config') + 1]),
        'the --config file is not copied into the image');
  check(runtimePackages(stages).every((p) => !p.endsWith('-dev')), 'a -dev package at runtime');

  step('deploy/docker/compose.yaml: modeldist built here, nginx in front with nginx.conf');
  const [compose] = parseAll(path.join(deploy, 'docker', 'compose.yaml'));
  const dir = path.join(deploy, 'docker');
  const md = compose.services?.modeldist;
  const nginx = compose.services?.nginx;
  check(md && nginx, 'compose.yaml needs the services modeldist and nginx');
  const context = path.resolve(dir, md.build.context);
  check(fs.existsSync(path.join(context, md.build.dockerfile)),
        `build: ${md.build.dockerfile} is not in context ${context}`);
  check(path.resolve(context, md.build.dockerfile) === path.join(dir, 'Dockerfile'),
        'compose builds another Dockerfile');
  check(md.volumes.some((v) => v.split(':')[1] === conf.get('data-dir')),
        `no volume on data-dir ${conf.get('data-dir')}`);
  const tokenArg = md.command[md.command.indexOf('--admin-token-file') + 1];
  check(md.secrets.some((s) => `/run/secrets/${s.source ?? s}` === tokenArg),
        `--admin-token-file ${tokenArg} is not a secret of the service`);
  check(compose.secrets?.[md.secrets[0].source ?? md.secrets[0]]?.file,
        'the admin token secret names no file');
  check(nginx.depends_on?.modeldist?.condition === 'service_healthy',
        'nginx does not wait for modeldist to be healthy');
  const confMount = nginx.volumes.find((v) => v.startsWith('./nginx.conf:'));
  check(confMount && confMount.split(':')[1] === '/etc/nginx/conf.d/default.conf',
        'nginx does not mount ./nginx.conf as conf.d/default.conf');
  check(fs.existsSync(path.join(dir, 'nginx.conf')), 'deploy/docker/nginx.conf is missing');
  const upstream = /server\s+(\S+):(\d+);/.exec(fs.readFileSync(path.join(dir, 'nginx.conf'), 'utf8'));
  check(upstream && upstream[1] === 'modeldist' &&
            Number(upstream[2]) === portOf(conf.get('http-listen')),
        'nginx.conf does not proxy to modeldist on the http-listen port');
  check(!md.ports?.some((p) => String(p).endsWith(`:${portOf(conf.get('http-listen'))}`)),
        'the server\'s HTTP port is published: only nginx should reach it');
}

if (mode === 'configmap-conf') {
  process.stdout.write(configMapConf(kubernetes()).text);
} else if (mode === 'runtime-packages') {
  console.log(runtimePackages(dockerfile()).join('\n'));
} else if (mode === 'build-copies') {
  console.log(copiedSources(dockerfile()[0]).join('\n'));
} else {
  if (mode === 'kubernetes') checkKubernetes();
  else checkDocker();
  console.log('PASS');
}

/**
 * Builds the real Kubernetes control plane from Go modules, once per machine:
 * one binary whose first argument picks kube-apiserver,
 * kube-controller-manager or kube-scheduler. The wrapper module requires
 * `k8s.io/kubernetes` and replaces each of its `./staging` modules with the
 * published `k8s.io/<name>` of the same minor version, as `go mod tidy` then
 * resolves. Sources, binary and Go's caches live outside the repository, in
 * `$NET_EXPORTER_CACHE` (default `$XDG_CACHE_HOME/net-exporter`, else
 * `~/.cache/net-exporter`), and are reused while the wrapper is unchanged.
 * @module
 */

import { CHILD_ENV } from "../helpers/requirements.ts";

export const KUBERNETES_VERSION = "v1.34.2";
/** The staging modules' tag of the same release. */
const STAGING_VERSION = "v0.34.2";

const MAIN_GO =
  `// One binary for the simulated cluster's control plane: argv[1] picks the component.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: control-plane kube-apiserver|kube-controller-manager|kube-scheduler [flags]")
		os.Exit(2)
	}
	var command *cobra.Command
	switch os.Args[1] {
	case "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	default:
		fmt.Fprintf(os.Stderr, "Cannot run %q: current value is not a control-plane component\\n", os.Args[1])
		os.Exit(2)
	}
	os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
	os.Exit(cli.Run(command))
}
`;

/** What /version reports: without it, helm reads v0.0.0 and refuses the chart's kubeVersion. */
const LDFLAGS = [
  `-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}`,
  `-X k8s.io/component-base/version.gitMajor=${KUBERNETES_VERSION.split(".")[0]!.slice(1)}`,
  `-X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION.split(".")[1]}`,
  "-X k8s.io/component-base/version.gitTreeState=clean",
].join(" ");

/** Where build products and Go's caches live: outside the repository, kept between runs. */
export function cacheDir(): string {
  const explicit = Deno.env.get("NET_EXPORTER_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  return `${xdg || `${Deno.env.get("HOME") ?? "/root"}/.cache`}/net-exporter`;
}

async function go(args: string[], cwd: string): Promise<string> {
  const output = await new Deno.Command("go", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { ...CHILD_ENV, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) {
    throw new Error(`Cannot build the control plane: go ${args.join(" ")} said:\n${text}`);
  }
  return text;
}

/** The go.mod of the wrapper: the release, with every staging module replaced by its published tag. */
async function wrapperGoMod(src: string): Promise<string> {
  const download = JSON.parse(
    await go(["mod", "download", "-json", `k8s.io/kubernetes@${KUBERNETES_VERSION}`], src),
  ) as { GoMod: string };
  const upstream = await Deno.readTextFile(download.GoMod);
  const staging = [...upstream.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s+=>\s+\.\/staging\//gm)].map((
    match,
  ) => match[1]!);
  if (staging.length === 0) {
    throw new Error(
      `Cannot build the control plane: k8s.io/kubernetes ${KUBERNETES_VERSION} lists no staging modules`,
    );
  }
  const goVersion = /^go (\S+)$/m.exec(upstream)?.[1] ?? "1.24.0";
  return [
    "module net-exporter.local/control-plane",
    "",
    `go ${goVersion}`,
    "",
    `require k8s.io/kubernetes ${KUBERNETES_VERSION}`,
    "",
    "replace (",
    ...staging.map((name) => `\t${name} => ${name} ${STAGING_VERSION}`),
    ")",
    "",
  ].join("\n");
}

/**
 * The control-plane binary, built first if this machine has none of this
 * version and wrapper. Returns its path and, when it was built now, how long
 * that took.
 */
export async function ensureControlPlane(
  log: (line: string) => void = (line) => console.error(line),
): Promise<{ binary: string; builtSeconds?: number }> {
  const root = `${cacheDir()}/control-plane`;
  const src = `${root}/src`;
  const stamp = `${KUBERNETES_VERSION}-${(await sha256(MAIN_GO + LDFLAGS)).slice(0, 12)}`;
  const binary = `${root}/bin/control-plane-${stamp}`;
  if (await exists(binary)) return { binary };
  await Deno.mkdir(src, { recursive: true });
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  log(
    `building kube-apiserver, kube-controller-manager and kube-scheduler ${KUBERNETES_VERSION} into ${root} (about 5-10 minutes on 2 cores the first time)`,
  );
  const started = performance.now();
  await Deno.writeTextFile(`${src}/main.go`, MAIN_GO);
  await Deno.writeTextFile(`${src}/go.mod`, "module net-exporter.local/control-plane\n");
  await Deno.writeTextFile(`${src}/go.mod`, await wrapperGoMod(src));
  await go(["mod", "tidy"], src);
  await go(["build", "-ldflags", LDFLAGS, "-o", `${binary}.partial`, "."], src);
  await Deno.rename(`${binary}.partial`, binary);
  const builtSeconds = Math.round((performance.now() - started) / 1000);
  log(`built the control plane in ${builtSeconds} s: ${binary}`);
  return { binary, builtSeconds };
}

/** The Prometheus Operator release whose CRDs the cluster gets (a Go module, like the control plane). */
export const PROMETHEUS_OPERATOR_VERSION = "v0.76.2";

/**
 * The ServiceMonitor and PrometheusRule CRDs, as YAML, from the Prometheus
 * Operator's Go module (`example/prometheus-operator-crd/`), so the API
 * server validates the chart's monitoring objects against their schemas.
 */
export async function monitoringCrds(): Promise<string[]> {
  const dir = `${cacheDir()}/control-plane/src`;
  await Deno.mkdir(dir, { recursive: true });
  const download = JSON.parse(
    await go([
      "mod",
      "download",
      "-json",
      `github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}`,
    ], dir),
  ) as { Dir: string };
  return await Promise.all(
    ["servicemonitors", "prometheusrules"].map((kind) =>
      Deno.readTextFile(
        `${download.Dir}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml`,
      )
    ),
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

if (import.meta.main) {
  await monitoringCrds();
  const { binary, builtSeconds } = await ensureControlPlane();
  console.log(
    builtSeconds === undefined ? `up to date: ${binary}` : `built in ${builtSeconds} s: ${binary}`,
  );
}

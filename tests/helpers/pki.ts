/**
 * Certificates for tests, made with openssl in a folder of the caller's: a
 * CA, and leaves it signs with the extensions asked (server or client use,
 * subject alternative names). EC P-256 keys, valid two days.
 * @module
 */

import { CHILD_ENV } from "./requirements.ts";

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd,
    stdout: "null",
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot make a certificate: openssl ${args[0]} said ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
}

/** Makes `ca.key` and `ca.crt` (self-signed, `/CN=<name>`) in `dir`. */
export async function makeCa(dir: string, name: string): Promise<void> {
  await openssl([
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ], dir);
}

/**
 * Makes `<name>.key` and `<name>.crt` in `dir`, signed by the CA there, with
 * `subject` (e.g. "/O=system:masters/CN=admin") and OpenSSL `extensions`.
 */
export async function signLeaf(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await openssl([
    "req",
    ...EC_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ], dir);
  await Deno.writeTextFile(`${dir}/${name}.cnf`, extensions);
  await openssl([
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.cnf`,
  ], dir);
}

/** Extensions of a server certificate for `sans` ("IP:…", "DNS:…"). */
export function serverExtensions(sans: readonly string[]): string {
  return `subjectAltName=${
    sans.join(",")
  }\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`;
}

/** Extensions of a client certificate. */
export const CLIENT_EXTENSIONS =
  "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";

/** A CA and one leaf it signs, as PEM, made in a temporary folder removed after. */
export async function caAndLeaf(
  caName: string,
  subject: string,
  extensions: string,
): Promise<{ caPem: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "test-pki-" });
  try {
    await makeCa(dir, caName);
    await signLeaf(dir, "leaf", subject, extensions);
    return {
      caPem: await Deno.readTextFile(`${dir}/ca.crt`),
      cert: await Deno.readTextFile(`${dir}/leaf.crt`),
      key: await Deno.readTextFile(`${dir}/leaf.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/* modeldist/agent.h: the C ABI of the modeldist device agent, for Swift, Dart FFI and C.
 *
 * One opaque handle per configuration; md_agent_sync() blocks until the tier's model on this
 * device is verified and active (or an error), calling `progress` from the calling thread.
 * Every string the library returns stays valid until the next call on the same handle or
 * md_agent_free(). Thread-compatible: use one handle per thread.
 *
 *   md_agent_config config = {0};
 *   config.server = "models.example.com:8470";
 *   config.tier = "llama8b";
 *   config.dir = "/Users/me/Library/Application Support/App/models";
 *   config.trust_root_file = ".../root.bin";
 *   md_agent* agent = md_agent_new(&config);
 *   md_sync_result result;
 *   int code = md_agent_sync(agent, on_progress, ctx, &result);
 *   if (code == MD_OK) load(result.model_path);
 *   else log(md_agent_last_error(agent));
 *   md_agent_free(agent);
 */
#ifndef MODELDIST_AGENT_H_
#define MODELDIST_AGENT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes; the same numbers as modeldist-agent's exit codes (docs/agent.md). */
enum {
  MD_OK = 0,
  MD_ERROR = 1,
  MD_INVALID_ARGUMENT = 2,
  MD_NOT_FOUND = 3,
  MD_BAD_SIGNATURE = 10,
  MD_BAD_TRUST_ROOT = 11,
  MD_MANIFEST_EXPIRED = 12,
  MD_SEQUENCE_ROLLBACK = 13,
  MD_WRONG_TARGET = 14,
  MD_MALFORMED_MANIFEST = 15,
  MD_INSUFFICIENT_DISK = 16,
  MD_DATA_LOSS = 20,
  MD_UNAVAILABLE = 21
};

typedef struct md_agent md_agent;

typedef struct md_agent_config {
  const char* server;           /* host:port; required */
  const char* tier;             /* required */
  const char* channel;          /* NULL or "" = stable */
  const char* dir;              /* required: models and state */
  const char* trust_root_file;  /* pinned SignedTrustRoot; needed until dir has one (kept
                                   there once a manifest verified under it), then ignored */
  const char* tls_ca_file;      /* NULL = plaintext */
  const char* platform;         /* NULL = detected; "macos", "linux", ... */
  const char* arch;             /* NULL = detected; "arm64", "x86_64" */
  const char* device_id;        /* NULL = none */
  int64_t max_bytes_per_second; /* 0 = unlimited */
  /* A version a sync activates is on trial until md_agent_confirm_loaded(); unconfirmed after
   * this many launches (md_agent_current_path calls) or seconds it is rolled back. 0 = no
   * limit (with both 0, only md_agent_report_load_failed rolls back). */
  int64_t trial_launches;
  int64_t trial_timeout_seconds;
  int no_reports;          /* 1 = send no status reports (docs/agent.md, Reports) */
  const char* app_version; /* NULL = none; sent with status reports (<= 64 bytes) */
} md_agent_config;

typedef struct md_sync_result {
  int activated;          /* 1 when a new version was activated, 0 when already current */
  const char* version;    /* models/{model}/versions/{version} */
  const char* digest;     /* sha256:<hex> */
  const char* model_path; /* the file or folder to load */
  int64_t bytes_received;
} md_sync_result;

/* Called with bytes verified so far and the total. */
typedef void (*md_progress_fn)(void* user, int64_t done, int64_t total);

/* Copies the config. Returns NULL only when out of memory. */
md_agent* md_agent_new(const md_agent_config* config);
/* Runs one sync. Returns MD_OK or an error code; `result` is filled on MD_OK. With a
 * device_id and unless no_reports, it then queues what happened (downloaded and verified, or
 * the failure's reason) in dir and sends the queue to the server within a few seconds; a
 * server that cannot be reached never changes the result. */
int md_agent_sync(md_agent* agent, md_progress_fn progress, void* user, md_sync_result* result);
/* Installs a bundle file (`modeldistctl bundle export`) with the checks of a sync, or, when
 * `model_file` is not NULL, adopts that file (a GGUF or CoreML zip the app ships) against a
 * manifest-only bundle. Uses the config's dir, trust_root_file, platform and arch, and its tier
 * and channel when set (else the bundle's). A bundle's expiry is waived; it never replaces a
 * version the device has newer. `result` is filled on MD_OK: activated is 1 when the bundle's
 * version was activated, 0 when it already was current or a newer one is kept (`version`
 * says which is current). No network; `server` is not used. */
int md_agent_install_bundle(md_agent* agent, const char* bundle_file, const char* model_file,
                            md_sync_result* result);
/* Trial activation (docs/agent.md, Trials). A new version is current on trial until the app
 * says whether it loads:
 *
 *   const char* path;
 *   if (md_agent_current_path(agent, &path) == MD_OK) {
 *     if (load(path)) md_agent_confirm_loaded(agent);
 *     else md_agent_report_load_failed(agent, "OUT_OF_MEMORY");  // then ask for the path again
 *   }
 *
 * md_agent_current_path: the model to load now (the file or folder), MD_NOT_FOUND when there is
 * none. Call it once per app launch: it counts a launch of a version on trial, and first rolls
 * back one past its trial limits (the limits of the sync that activated it). */
int md_agent_current_path(md_agent* agent, const char** model_path);
/* The app loaded the model (the last path this handle returned, by md_agent_current_path,
 * md_agent_sync or md_agent_install_bundle): its trial ends. MD_OK also when nothing was on
 * trial. MD_ERROR when `current` has moved on since that path was returned (another version
 * is on trial now): ask for the path again. */
int md_agent_confirm_loaded(md_agent* agent);
/* The app could not load the model: `reason` is UPPER_SNAKE_CASE, at most 64 bytes (e.g.
 * "OUT_OF_MEMORY"; MD_INVALID_ARGUMENT otherwise). A version on trial is rolled back to the
 * last confirmed one (or to no model, when it was the first), and its digest is not installed
 * again until the manifest names another; a confirmed version stays (the failure is
 * reported). Then md_agent_current_path says what to load. */
int md_agent_report_load_failed(md_agent* agent, const char* reason);
/* The message of the last error on this handle ("" after success). */
const char* md_agent_last_error(const md_agent* agent);
void md_agent_free(md_agent* agent);

#ifdef __cplusplus
}
#endif

#endif /* MODELDIST_AGENT_H_ */

// `modeldistctl status`: the server's state on one screen, from the admin rpcs that already
// exist: what each tier/channel resolves to and the rollouts in flight on it (ListTiers,
// ListRollouts), how far the published blobs are copied to each replicating origin (the
// replicas of every PUBLISHED version's artifacts: ListModels, ListVersions, ListOrigins), the
// trust root devices verify manifests with (GetTrustRoot: its version, threshold and key ids)
// and the blob store's usage (ListOriginsResponse.blob_store).
//
// --json prints one object with these stable fields (counts are numbers, names strings):
//   tiers[]: tier, channel, version, sequence, updateTime,
//            rollouts[]: id, fromVersion, toVersion, basisPoints, state
//   replication[]: origin, kind, blobs, confirmed, pending, copying, failing,
//                  failures[]: digest, attempts, lastError
//   trustRoot: version, threshold, keyIds[]
//   blobStore: blobCount, totalBytes, damagedCount
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/registry_client.h"
#include "common/json.h"
#include "common/status.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::ctl {
namespace {

struct TierStatus {
  v1::TierBinding binding;
  std::vector<v1::Rollout> rollouts;  // ACTIVE or PAUSED
};

struct Failure {
  std::string digest;
  v1::Replica replica;
};

struct OriginStatus {
  v1::OriginSummary origin;
  int64_t blobs = 0;  // published blobs that have a replica row for this origin
  std::map<v1::Replica::State, int64_t> by_state;
  std::vector<Failure> failures;
};

struct ServerStatus {
  std::vector<TierStatus> tiers;
  std::vector<OriginStatus> replication;
  v1::TrustRoot root;
  v1::BlobStoreUsage blob_store;
};

bool InFlight(const v1::Rollout& r) {
  return r.state() == v1::Rollout::ACTIVE || r.state() == v1::Rollout::PAUSED;
}

absl::StatusOr<ServerStatus> Gather(Invocation& inv, RegistryClient& client) {
  ServerStatus status;
  MD_ASSIGN_OR_RETURN(v1::ListTiersResponse tiers,
                      ListAll(v1::ListTiersRequest(),
                              [&](const v1::ListTiersRequest& r) { return client.ListTiers(r); }));
  std::map<std::pair<std::string, std::string>, size_t> tier_at;
  for (const v1::TierBinding& b : tiers.tiers()) {
    tier_at[{b.tier(), b.channel()}] = status.tiers.size();
    status.tiers.push_back({b, {}});
  }
  MD_ASSIGN_OR_RETURN(v1::ListRolloutsResponse rollouts,
                      ListAll(v1::ListRolloutsRequest(), [&](const v1::ListRolloutsRequest& r) {
                        return client.ListRollouts(r);
                      }));
  for (const v1::Rollout& r : rollouts.rollouts()) {
    if (!InFlight(r)) continue;
    auto it = tier_at.find({r.tier(), r.channel()});
    if (it == tier_at.end()) continue;  // a rollout needs a binding; none means a race
    status.tiers[it->second].rollouts.push_back(r);
  }

  MD_ASSIGN_OR_RETURN(v1::ListOriginsResponse origins,
                      client.ListOrigins(v1::ListOriginsRequest()));
  status.blob_store = origins.blob_store();
  std::map<std::string, size_t> origin_at;
  for (const v1::OriginSummary& o : origins.origins()) {
    if (!o.replicate()) continue;
    origin_at[o.name()] = status.replication.size();
    status.replication.push_back({o, 0, {}, {}});
  }
  // Each published blob once, however many versions declare it.
  std::set<std::string> seen;
  MD_ASSIGN_OR_RETURN(v1::ListModelsResponse models,
                      ListAll(v1::ListModelsRequest(), [&](const v1::ListModelsRequest& r) {
                        return client.ListModels(r);
                      }));
  for (const v1::Model& m : models.models()) {
    v1::ListVersionsRequest request;
    request.set_parent(m.name());
    MD_ASSIGN_OR_RETURN(
        v1::ListVersionsResponse versions,
        ListAll(request, [&](const v1::ListVersionsRequest& r) { return client.ListVersions(r); }));
    for (const v1::Version& v : versions.versions()) {
      if (v.state() != v1::Version::PUBLISHED) continue;
      for (const v1::Artifact& a : v.artifacts()) {
        if (!seen.insert(a.digest()).second) continue;
        for (const v1::Replica& r : a.replicas()) {
          auto it = origin_at.find(r.origin());
          if (it == origin_at.end()) continue;  // an origin no longer replicating
          OriginStatus& o = status.replication[it->second];
          ++o.blobs;
          ++o.by_state[r.state()];
          if (r.state() == v1::Replica::FAILING) o.failures.push_back({a.digest(), r});
        }
      }
    }
  }

  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, inv.Channel());
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, FetchTrustRoot(channel, 0));
  if (!status.root.ParseFromString(signed_root.root())) {
    return MakeError(absl::StatusCode::kDataLoss, "TRUST_ROOT_INVALID",
                     "the server's newest trust root does not parse as a TrustRoot");
  }
  return status;
}

std::string KeyIds(const v1::TrustRoot& root) {
  std::vector<std::string> ids;
  for (const v1::SigningKey& k : root.keys()) ids.push_back(k.key_id());
  return absl::StrJoin(ids, ", ");
}

int64_t Count(const OriginStatus& o, v1::Replica::State state) {
  auto it = o.by_state.find(state);
  return it == o.by_state.end() ? 0 : it->second;
}

std::string StatusJson(const ServerStatus& s) {
  std::vector<std::string> tiers;
  for (const TierStatus& t : s.tiers) {
    std::vector<std::string> rollouts;
    for (const v1::Rollout& r : t.rollouts) {
      rollouts.push_back(absl::StrFormat(
          "{\"id\":%s,\"fromVersion\":%s,\"toVersion\":%s,\"basisPoints\":%d,\"state\":\"%s\"}",
          JsonQuote(r.id()), JsonQuote(r.from_version()), JsonQuote(r.to_version()),
          r.basis_points(), RolloutStateName(r.state())));
    }
    const v1::TierBinding& b = t.binding;
    tiers.push_back(absl::StrFormat(
        "{\"tier\":%s,\"channel\":%s,\"version\":%s,\"sequence\":%d,\"updateTime\":\"%s\","
        "\"rollouts\":[%s]}",
        JsonQuote(b.tier()), JsonQuote(b.channel()), JsonQuote(b.version()), b.sequence(),
        FormatTime(b.update_time()), absl::StrJoin(rollouts, ",")));
  }
  std::vector<std::string> replication;
  for (const OriginStatus& o : s.replication) {
    std::vector<std::string> failures;
    for (const Failure& f : o.failures) {
      failures.push_back(absl::StrFormat("{\"digest\":%s,\"attempts\":%d,\"lastError\":%s}",
                                         JsonQuote(f.digest), f.replica.attempts(),
                                         JsonQuote(f.replica.last_error())));
    }
    replication.push_back(absl::StrFormat(
        "{\"origin\":%s,\"kind\":%s,\"blobs\":%d,\"confirmed\":%d,\"pending\":%d,\"copying\":%d,"
        "\"failing\":%d,\"failures\":[%s]}",
        JsonQuote(o.origin.name()), JsonQuote(o.origin.kind()), o.blobs,
        Count(o, v1::Replica::CONFIRMED), Count(o, v1::Replica::PENDING),
        Count(o, v1::Replica::COPYING), Count(o, v1::Replica::FAILING),
        absl::StrJoin(failures, ",")));
  }
  std::vector<std::string> key_ids;
  for (const v1::SigningKey& k : s.root.keys()) key_ids.push_back(JsonQuote(k.key_id()));
  return absl::StrFormat(
      "{\"tiers\":[%s],\"replication\":[%s],\"trustRoot\":{\"version\":%d,\"threshold\":%d,"
      "\"keyIds\":[%s]},\"blobStore\":{\"blobCount\":%d,\"totalBytes\":%d,\"damagedCount\":%d}}\n",
      absl::StrJoin(tiers, ","), absl::StrJoin(replication, ","), s.root.version(),
      s.root.threshold(), absl::StrJoin(key_ids, ","), s.blob_store.blob_count(),
      s.blob_store.total_bytes(), s.blob_store.damaged_count());
}

void PrintHuman(std::ostream& out, const ServerStatus& s) {
  out << "tiers:\n";
  if (s.tiers.empty()) out << "  (none bound yet)\n";
  std::vector<std::vector<std::string>> rows;
  for (const TierStatus& t : s.tiers) {
    const v1::TierBinding& b = t.binding;
    rows.push_back({absl::StrCat("  ", b.tier(), "/", b.channel()),
                    b.version().empty() ? "(none: every bound version was yanked)" : b.version(),
                    absl::StrCat("sequence ", b.sequence()), FormatTime(b.update_time())});
    for (const v1::Rollout& r : t.rollouts) {
      rows.push_back({absl::StrCat("    rollout ", r.id()),
                      absl::StrCat(RolloutStateName(r.state()), " ",
                                   FormatBasisPoints(r.basis_points()), " on ", r.to_version()),
                      absl::StrCat("from ", r.from_version())});
    }
  }
  PrintTable(out, rows);
  out << "replication of published blobs:\n";
  if (s.replication.empty()) out << "  (no origin replicates)\n";
  for (const OriginStatus& o : s.replication) {
    out << "  " << o.origin.name() << " (" << o.origin.kind() << "): " << o.blobs << " blobs, "
        << Count(o, v1::Replica::CONFIRMED) << " confirmed, " << Count(o, v1::Replica::PENDING)
        << " pending, " << Count(o, v1::Replica::COPYING) << " copying, "
        << Count(o, v1::Replica::FAILING) << " failing\n";
    for (const Failure& f : o.failures) {
      out << "    failing " << f.digest << " (" << f.replica.attempts()
          << (f.replica.attempts() == 1 ? " attempt" : " attempts")
          << "): " << OneLine(f.replica.last_error()) << "\n";
    }
  }
  out << "trust root: version " << s.root.version() << ", threshold " << s.root.threshold()
      << ", signing keys " << KeyIds(s.root) << "\n";
  out << "blob store: " << s.blob_store.blob_count() << " blobs, "
      << FormatBytes(s.blob_store.total_bytes()) << " (" << s.blob_store.total_bytes()
      << " bytes), " << s.blob_store.damaged_count() << " damaged\n";
}

}  // namespace

void StatusFlags(Flags* f) { f->AddBool("json", "print the status as JSON"); }

absl::Status RunStatus(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "status"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(ServerStatus status, Gather(inv, *client));
  if (WantJson(inv, flags)) {
    inv.out() << StatusJson(status);
  } else {
    PrintHuman(inv.out(), status);
  }
  return absl::OkStatus();
}

}  // namespace modeldist::ctl

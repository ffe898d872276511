#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/status.h"
#include "modeldist/v1/registry.pb.h"

namespace modeldist::ctl {
namespace {

constexpr absl::string_view kScopeWords = "read, publish, rollout, keys, admin";

// `read` for SCOPE_READ, as the server's messages name scopes.
std::string ScopeWord(int scope) {
  const std::string& name = v1::Scope_Name(static_cast<v1::Scope>(scope));
  if (name.size() <= 6 || scope == v1::SCOPE_UNSPECIFIED) return absl::StrCat(scope);
  return absl::AsciiStrToLower(name.substr(6));
}

// Every --scope, each a word or a comma-separated list of them.
absl::StatusOr<std::vector<v1::Scope>> ScopesFromFlags(const Flags& flags) {
  std::vector<v1::Scope> scopes;
  for (const std::string& value : flags.GetAll("scope")) {
    for (absl::string_view word : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      v1::Scope scope;
      word = absl::StripAsciiWhitespace(word);
      if (!v1::Scope_Parse(absl::StrCat("SCOPE_", absl::AsciiStrToUpper(word)), &scope) ||
          scope == v1::SCOPE_UNSPECIFIED) {
        return UsageError(absl::StrCat("--scope \"", word, "\" is not one of ", kScopeWords));
      }
      scopes.push_back(scope);
    }
  }
  if (scopes.empty()) {
    return UsageError(absl::StrCat("creds create needs --scope (one or more of ", kScopeWords,
                                   "; repeat it or separate with commas)"));
  }
  return scopes;
}

std::string ScopeList(const v1::Credential& c) {
  std::vector<std::string> words;
  for (int scope : c.scopes()) words.push_back(ScopeWord(scope));
  return absl::StrJoin(words, ",");
}

absl::Status CredsCreate(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() != 2) return UsageError("creds create needs exactly one NAME");
  v1::CreateCredentialRequest request;
  request.set_name(args[1]);
  MD_ASSIGN_OR_RETURN(std::vector<v1::Scope> scopes, ScopesFromFlags(flags));
  for (v1::Scope scope : scopes) request.add_scopes(scope);
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::CreateCredentialResponse created, client->CreateCredential(request));
  if (WantJson(inv, flags)) return PrintJson(inv, created);
  // The token alone on stdout, so `creds create ci --scope publish > ci.token` makes the file
  // --token-file reads; what it is goes to stderr.
  inv.out() << created.token() << "\n";
  inv.err() << "created credential \"" << created.credential().name() << "\" with scopes "
            << ScopeList(created.credential())
            << "; its token (above) is shown only now: the server keeps only its SHA-256. "
               "Use it with --token-file FILE\n";
  return absl::OkStatus();
}

absl::Status CredsList(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 1) return UsageError("creds list takes no arguments");
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(
      v1::ListCredentialsResponse all,
      ListAll(v1::ListCredentialsRequest(), [client](const v1::ListCredentialsRequest& request) {
        return client->ListCredentials(request);
      }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "SCOPES", "CREATED", "CREATED BY", "REVOKED"}};
  for (const v1::Credential& c : all.credentials()) {
    rows.push_back({c.name(), ScopeList(c), FormatTime(c.create_time()), OneLine(c.created_by()),
                    c.has_revoke_time() ? FormatTime(c.revoke_time()) : "-"});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

absl::Status CredsRevoke(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() != 2) return UsageError("creds revoke needs exactly one NAME");
  v1::RevokeCredentialRequest request;
  request.set_name(args[1]);
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::Credential revoked, client->RevokeCredential(request));
  if (WantJson(inv, flags)) return PrintJson(inv, revoked);
  inv.out() << "revoked credential \"" << revoked.name() << "\" at "
            << FormatTime(revoked.revoke_time()) << "; its token and certificate name no longer "
            << "work\n";
  return absl::OkStatus();
}

}  // namespace

void CredsFlags(Flags* f) {
  f->Add("scope", "SCOPE", "",
         "create: what it may do: read, publish, rollout, keys or admin (every scope); repeat "
         "or separate with commas");
  f->AddBool("json", "print the credential (create: with its token) as JSON");
}

absl::Status RunCreds(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands = "create, list, revoke";
  if (args.empty()) return UsageError(absl::StrCat("creds needs a subcommand: ", kSubcommands));
  const std::string& sub = args[0];
  if (sub != "create" && flags.IsSet("scope")) {
    return UsageError(absl::StrCat("--scope is for creds create, not creds ", sub));
  }
  if (sub == "create") return CredsCreate(inv, flags);
  if (sub == "list") return CredsList(inv, flags);
  if (sub == "revoke") return CredsRevoke(inv, flags);
  return UsageError(absl::StrCat("unknown creds subcommand \"", sub, "\"; one of ", kSubcommands));
}

}  // namespace modeldist::ctl

// CheckCoreMlZip: a zipped CoreML package, read with libzip through the ByteSource (a
// zip_source_function), so the server checks a blob it holds open, not a path. Only the central
// directory and the small JSON files are read, never the weights.
//
// What Apple writes (coremltools modelpackage/src/ModelPackage.cpp): an .mlpackage holds
// Manifest.json {"fileFormatVersion": "1.0.0", "itemInfoEntries": {<id>: {"path", "name",
// "author", "description"}}, "rootModelIdentifier": <id>} and the items under Data/<path>
// (the model spec com.apple.CoreML/model.mlmodel, the weights folder com.apple.CoreML/weights).
// A compiled .mlmodelc holds coremldata.bin, the program (model.mil, or model.espresso.net for
// a neural network) and metadata.json, a JSON array whose first object names the modelType.
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/model_check/model_check.h"
#include "common/model_check/zip_names.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace modeldist::model_check {
namespace {

constexpr absl::string_view kReason = "COREML_ZIP_INVALID";
// The JSON files read (Manifest.json, metadata.json, config.json) are a few KiB in practice.
constexpr uint64_t kMaxJsonBytes = uint64_t{4} << 20;

absl::Status Invalid(absl::string_view message, absl::string_view entry = "") {
  ErrorMetadata metadata;
  // Escaped: ErrorInfo metadata is a proto3 string, which must be UTF-8, and a hostile entry
  // name need not be; a raw one would make the whole ErrorInfo (its reason too) unreadable.
  if (!entry.empty()) metadata.emplace_back("entry", absl::CHexEscape(entry));
  return MakeError(absl::StatusCode::kInvalidArgument, kReason,
                   absl::StrCat("CoreML zip: ", message), metadata);
}

absl::Status EntryInvalid(absl::string_view entry, absl::string_view why) {
  return Invalid(absl::StrCat("entry \"", absl::CHexEscape(entry), "\": ", why), entry);
}

// The state of the libzip source over a ByteSource. A read error of the source is kept so the
// caller can pass it on instead of libzip's "Read error".
struct SourceState {
  const ByteSource* source = nullptr;
  uint64_t pos = 0;
  zip_error_t error;
  absl::Status read_status;
};

zip_int64_t SourceCallback(void* userdata, void* data, zip_uint64_t length, zip_source_cmd_t cmd) {
  auto* state = static_cast<SourceState*>(userdata);
  const uint64_t size = static_cast<uint64_t>(std::max<int64_t>(state->source->size(), 0));
  switch (cmd) {
    case ZIP_SOURCE_OPEN:
      state->pos = 0;
      return 0;
    case ZIP_SOURCE_READ: {
      if (state->pos >= size) return 0;
      const size_t want = static_cast<size_t>(std::min<uint64_t>(length, size - state->pos));
      absl::StatusOr<size_t> got =
          state->source->ReadAt(static_cast<int64_t>(state->pos), static_cast<char*>(data), want);
      if (!got.ok()) {
        state->read_status = got.status();
        zip_error_set(&state->error, ZIP_ER_READ, 0);
        return -1;
      }
      state->pos += *got;
      return static_cast<zip_int64_t>(*got);
    }
    case ZIP_SOURCE_CLOSE:
      return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = size;
      st->valid |= ZIP_STAT_SIZE;
      return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
      return zip_error_to_data(&state->error, data, length);
    case ZIP_SOURCE_SEEK: {
      const zip_int64_t to =
          zip_source_seek_compute_offset(state->pos, size, data, length, &state->error);
      if (to < 0) return -1;
      state->pos = static_cast<uint64_t>(to);
      return 0;
    }
    case ZIP_SOURCE_TELL:
      return static_cast<zip_int64_t>(state->pos);
    case ZIP_SOURCE_FREE:
      return 0;  // the state belongs to the caller
    case ZIP_SOURCE_SUPPORTS:
      return ZIP_SOURCE_SUPPORTS_SEEKABLE;
    default:
      zip_error_set(&state->error, ZIP_ER_OPNOTSUPP, 0);
      return -1;
  }
}

struct ZipDiscarder {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};

struct Entry {
  zip_uint64_t index = 0;
  std::string name;  // raw, as in the archive
  std::vector<std::string> parts;
  bool is_dir = false;
  uint64_t size = 0;
};

// The archive's entries by path (without a trailing `/`), and every folder that has an entry
// or holds one.
struct Listing {
  std::vector<Entry> entries;
  std::map<std::string, const Entry*> files;
  std::set<std::string> dirs;
};

std::string Basename(const Entry& entry) { return entry.parts.back(); }

absl::StatusOr<Listing> ListEntries(zip_t* archive, const CheckOptions& options) {
  const zip_int64_t count = zip_get_num_entries(archive, 0);
  if (count < 0) return Invalid(zip_strerror(archive));
  if (count > options.max_zip_entries) {
    return Invalid(absl::StrCat("the archive has ", count, " entries; at most ",
                                options.max_zip_entries, " are allowed"));
  }
  const uint64_t max_total =
      static_cast<uint64_t>(std::max<int64_t>(options.max_zip_total_bytes, 0));
  const uint64_t max_ratio = static_cast<uint64_t>(std::max<int64_t>(options.max_zip_ratio, 0));
  uint64_t total = 0;
  Listing listing;
  listing.entries.reserve(static_cast<size_t>(count));
  for (zip_int64_t i = 0; i < count; ++i) {
    Entry entry;
    entry.index = static_cast<zip_uint64_t>(i);
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive, entry.index, ZIP_FL_ENC_RAW, &st) != 0) {
      return Invalid(absl::StrCat("entry ", i, ": ", zip_strerror(archive)));
    }
    constexpr zip_uint64_t kNeeded = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                                     ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
    if ((st.valid & kNeeded) != kNeeded || st.name == nullptr) {
      return Invalid(absl::StrCat("entry ", i, " lacks its name, sizes or method"));
    }
    entry.name = st.name;
    const std::string name_problem = UnsafeZipNameProblem(entry.name, &entry.parts, &entry.is_dir);
    if (!name_problem.empty()) return EntryInvalid(entry.name, name_problem);
    zip_uint8_t opsys = 0;
    zip_uint32_t attributes = 0;
    if (zip_file_get_external_attributes(archive, entry.index, 0, &opsys, &attributes) != 0) {
      return EntryInvalid(entry.name, zip_strerror(archive));
    }
    const std::string type_problem =
        UnsupportedZipEntryTypeProblem(opsys, attributes, entry.is_dir);
    if (!type_problem.empty()) return EntryInvalid(entry.name, type_problem);
    if (st.encryption_method != ZIP_EM_NONE) return EntryInvalid(entry.name, "encrypted");
    if (!zip_compression_method_supported(st.comp_method, /*compress=*/0)) {
      return EntryInvalid(entry.name,
                          absl::StrCat("unsupported compression method ", st.comp_method));
    }
    entry.size = st.size;
    if (entry.is_dir && entry.size != 0) return EntryInvalid(entry.name, "a folder with data");
    if (entry.size > max_total - total) {
      return EntryInvalid(entry.name, absl::StrCat("the archive unpacks to more than ", max_total,
                                                   " bytes, the limit"));
    }
    total += entry.size;
    if (ZipRatioExceeded(st.size, st.comp_size, max_ratio)) {
      return EntryInvalid(entry.name,
                          absl::StrCat(st.size, " bytes from ", st.comp_size,
                                       " compressed exceeds the ratio limit ", max_ratio));
    }
    listing.entries.push_back(std::move(entry));
  }
  // Paths are indexed once every entry is in place (the vector no longer moves).
  for (const Entry& entry : listing.entries) {
    std::string path;
    for (size_t c = 0; c + 1 < entry.parts.size(); ++c) {
      if (c > 0) path += '/';
      path += entry.parts[c];
      if (listing.files.count(path)) {
        return EntryInvalid(entry.name, absl::StrCat("`", absl::CHexEscape(path), "` is a file"));
      }
      listing.dirs.insert(path);
    }
    path = absl::StrJoin(entry.parts, "/");
    if (listing.files.count(path) || (!entry.is_dir && listing.dirs.count(path))) {
      return EntryInvalid(entry.name, "appears twice");
    }
    if (entry.is_dir) {
      listing.dirs.insert(path);
    } else {
      listing.files[path] = &entry;
    }
  }
  return listing;
}

// Reads a small entry whole, checking it has exactly its declared size.
absl::StatusOr<std::string> ReadEntry(zip_t* archive, const Entry& entry, SourceState& state) {
  if (entry.size > kMaxJsonBytes) {
    return EntryInvalid(entry.name,
                        absl::StrCat(entry.size, " bytes; at most ", kMaxJsonBytes, " are read"));
  }
  std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen_index(archive, entry.index, 0));
  if (file == nullptr) {
    if (!state.read_status.ok()) return state.read_status;
    return EntryInvalid(entry.name, zip_strerror(archive));
  }
  std::string data(static_cast<size_t>(entry.size) + 1, '\0');
  uint64_t got = 0;
  for (;;) {
    const zip_int64_t n = zip_fread(file.get(), data.data() + got, data.size() - got);
    if (n < 0) {
      if (!state.read_status.ok()) return state.read_status;
      return EntryInvalid(entry.name, zip_error_strerror(zip_file_get_error(file.get())));
    }
    if (n == 0) break;
    got += static_cast<uint64_t>(n);
    if (got > entry.size) break;
  }
  if (got != entry.size) {
    return EntryInvalid(entry.name,
                        absl::StrCat("holds ", got > entry.size ? "more than " : "", got,
                                     " bytes instead of its declared ", entry.size));
  }
  data.resize(static_cast<size_t>(got));
  return data;
}

absl::StatusOr<google::protobuf::Value> ReadJson(zip_t* archive, const Entry& entry,
                                                 SourceState& state) {
  MD_ASSIGN_OR_RETURN(std::string text, ReadEntry(archive, entry, state));
  google::protobuf::Value value;
  const auto parsed = google::protobuf::util::JsonStringToMessage(text, &value);
  if (!parsed.ok()) {
    return EntryInvalid(entry.name, absl::StrCat("not valid JSON: ", parsed.message().as_string()));
  }
  return value;
}

// The string field `key` of a JSON object, or null.
const std::string* StringField(const google::protobuf::Value& object, const std::string& key) {
  if (!object.has_struct_value()) return nullptr;
  const auto& fields = object.struct_value().fields();
  const auto it = fields.find(key);
  if (it == fields.end() || !it->second.has_string_value()) return nullptr;
  return &it->second.string_value();
}

// Whether `folder` holds a non-empty file at any depth.
bool HoldsData(const Listing& listing, const std::string& folder) {
  const std::string prefix = folder + "/";
  for (auto it = listing.files.lower_bound(prefix);
       it != listing.files.end() && absl::StartsWith(it->first, prefix); ++it) {
    if (it->second->size > 0) return true;
  }
  return false;
}

absl::Status CheckMlPackage(zip_t* archive, const Listing& listing, const std::string& package,
                            SourceState& state) {
  const std::string manifest_path = package + "/Manifest.json";
  const auto manifest_it = listing.files.find(manifest_path);
  if (manifest_it == listing.files.end()) {
    return Invalid(
        absl::StrCat(absl::CHexEscape(manifest_path), " is missing; every .mlpackage has one"));
  }
  const Entry& entry = *manifest_it->second;
  MD_ASSIGN_OR_RETURN(google::protobuf::Value manifest, ReadJson(archive, entry, state));
  if (!manifest.has_struct_value()) return EntryInvalid(entry.name, "not a JSON object");
  const std::string* version = StringField(manifest, "fileFormatVersion");
  if (version == nullptr) {
    return EntryInvalid(entry.name, "no string \"fileFormatVersion\"");
  }
  const std::vector<std::string> version_parts = absl::StrSplit(*version, '.');
  if (version_parts.size() != 3 || version_parts[0] != "1") {
    return EntryInvalid(entry.name, absl::StrCat("fileFormatVersion \"", absl::CHexEscape(*version),
                                                 "\" is not 1.x.y, the version CoreML reads"));
  }
  const auto& fields = manifest.struct_value().fields();
  const auto items_it = fields.find("itemInfoEntries");
  if (items_it == fields.end() || !items_it->second.has_struct_value() ||
      items_it->second.struct_value().fields().empty()) {
    return EntryInvalid(entry.name, "no \"itemInfoEntries\" object naming the package's items");
  }
  const auto& items = items_it->second.struct_value().fields();
  const std::string* root_id = StringField(manifest, "rootModelIdentifier");
  if (root_id == nullptr) return EntryInvalid(entry.name, "no string \"rootModelIdentifier\"");
  if (items.find(*root_id) == items.end()) {
    return EntryInvalid(entry.name,
                        absl::StrCat("rootModelIdentifier \"", absl::CHexEscape(*root_id),
                                     "\" names no item of itemInfoEntries"));
  }
  // In key order, so that the first problem reported does not depend on hashing.
  std::vector<std::string> ids;
  for (const auto& [id, item] : items) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (const std::string& id : ids) {
    const google::protobuf::Value& item = items.at(id);
    const std::string where = absl::StrCat("item \"", absl::CHexEscape(id), "\"");
    for (const char* key : {"path", "name", "author", "description"}) {
      if (StringField(item, key) == nullptr) {
        return EntryInvalid(entry.name, absl::StrCat(where, " has no string \"", key, "\""));
      }
    }
    const std::string& path = *StringField(item, "path");
    std::vector<std::string> parts;
    bool is_dir = false;
    const std::string problem = UnsafeZipNameProblem(path, &parts, &is_dir);
    if (!problem.empty()) {
      return EntryInvalid(entry.name,
                          absl::StrCat(where, " path \"", absl::CHexEscape(path), "\": ", problem));
    }
    const std::string full = absl::StrCat(package, "/Data/", absl::StrJoin(parts, "/"));
    const auto file_it = listing.files.find(full);
    const bool is_file = file_it != listing.files.end();
    if (!is_file && !listing.dirs.count(full)) {
      return Invalid(absl::StrCat(absl::CHexEscape(full), " is missing: ",
                                  absl::CHexEscape(entry.name), " lists it as ", where),
                     full);
    }
    if (id == *root_id && (!is_file || file_it->second->size == 0)) {
      return Invalid(absl::StrCat(absl::CHexEscape(full), ", the root model, is ",
                                  is_file ? "empty" : "a folder, not the model file"),
                     full);
    }
    const bool is_weights = parts.back() == "weights" || *StringField(item, "name") == "weights";
    if (is_weights && (is_file ? file_it->second->size == 0 : !HoldsData(listing, full))) {
      return Invalid(absl::StrCat(absl::CHexEscape(full), ", the model's weights, holds no data"),
                     full);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckMlModelc(zip_t* archive, const Listing& listing,
                                          const std::string& package, SourceState& state) {
  const auto non_empty = [&](const std::string& path) {
    const auto it = listing.files.find(path);
    return it != listing.files.end() && it->second->size > 0;
  };
  const std::string coremldata = package + "/coremldata.bin";
  if (!non_empty(coremldata)) {
    return Invalid(
        absl::StrCat(absl::CHexEscape(coremldata), " is missing or empty; every .mlmodelc has one"),
        coremldata);
  }
  if (!non_empty(package + "/model.mil") && !non_empty(package + "/model.espresso.net")) {
    return Invalid(absl::StrCat(absl::CHexEscape(package),
                                " holds no model: neither model.mil (an ML program) "
                                "nor model.espresso.net (a neural network)"));
  }
  const auto metadata_it = listing.files.find(package + "/metadata.json");
  if (metadata_it == listing.files.end()) return std::string();
  const Entry& entry = *metadata_it->second;
  MD_ASSIGN_OR_RETURN(google::protobuf::Value metadata, ReadJson(archive, entry, state));
  if (!metadata.has_list_value()) return EntryInvalid(entry.name, "not a JSON array");
  if (metadata.list_value().values_size() == 0) return std::string();
  const google::protobuf::Value& first = metadata.list_value().values(0);
  if (!first.has_struct_value()) return std::string();
  const auto& fields = first.struct_value().fields();
  const auto type_it = fields.find("modelType");
  if (type_it == fields.end()) return std::string();
  const std::string* type = StringField(type_it->second, "name");
  if (type == nullptr) return std::string();
  absl::string_view architecture = *type;
  absl::ConsumePrefix(&architecture, "MLModelType_");
  return std::string(architecture);
}

}  // namespace

absl::StatusOr<v1::ModelInfo> CheckCoreMlZip(const ByteSource& source,
                                             const CheckOptions& options) {
  SourceState state;
  state.source = &source;
  zip_error_init(&state.error);
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* zip_source = zip_source_function_create(SourceCallback, &state, &error);
  if (zip_source == nullptr) {
    zip_error_fini(&error);
    // It fails only when out of memory.
    return ErrnoStatus(ENOMEM, "zip_source_function_create");
  }
  // Declared after `state`, so the archive (which calls back into it) goes first.
  std::unique_ptr<zip_t, ZipDiscarder> archive(
      zip_open_from_source(zip_source, ZIP_RDONLY, &error));
  if (archive == nullptr) {
    zip_source_free(zip_source);
    const std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    if (!state.read_status.ok()) return state.read_status;
    return Invalid(absl::StrCat("not a readable zip archive: ", why));
  }
  zip_error_fini(&error);
  absl::StatusOr<v1::ModelInfo> result = [&]() -> absl::StatusOr<v1::ModelInfo> {
    MD_ASSIGN_OR_RETURN(Listing listing, ListEntries(archive.get(), options));

    // Not widened by options.required_files: `publish --check --require-file X` must accept
    // only what the server, with its own options, accepts.
    const std::set<std::string> allowed_next_to_package(std::begin(kFilesNextToPackage),
                                                        std::end(kFilesNextToPackage));
    std::set<std::string> packages;
    for (const Entry& entry : listing.entries) {
      const std::string& top = entry.parts.front();
      const bool in_folder = entry.parts.size() > 1 || entry.is_dir;
      if (in_folder && (absl::EndsWith(top, ".mlpackage") || absl::EndsWith(top, ".mlmodelc"))) {
        packages.insert(top);
      } else if (in_folder || !allowed_next_to_package.count(top)) {
        return EntryInvalid(entry.name,
                            absl::StrCat("outside the package; only tokenizer and config files (",
                                         absl::StrJoin(std::begin(kFilesNextToPackage),
                                                       std::end(kFilesNextToPackage), ", "),
                                         ") may sit next to the .mlpackage or .mlmodelc folder"));
      }
    }
    if (packages.empty()) {
      return Invalid("no .mlpackage or .mlmodelc folder at the top of the archive");
    }
    if (packages.size() > 1) {
      std::vector<std::string> shown;
      for (const std::string& p : packages) shown.push_back(absl::CHexEscape(p));
      return Invalid(absl::StrCat("more than one package at the top of the archive (",
                                  absl::StrJoin(shown, ", "), "); exactly one is allowed"));
    }
    const std::string& package = *packages.begin();
    const bool is_mlpackage = absl::EndsWith(package, ".mlpackage");

    v1::ModelInfo info;
    if (is_mlpackage) {
      MD_RETURN_IF_ERROR(CheckMlPackage(archive.get(), listing, package, state));
    } else {
      MD_ASSIGN_OR_RETURN(std::string model_type,
                          CheckMlModelc(archive.get(), listing, package, state));
      info.set_architecture(DisplayText(model_type));
    }

    // Files the app needs besides the model, found by basename anywhere.
    std::set<std::string> basenames;
    int64_t files = 0;
    for (const Entry& entry : listing.entries) {
      if (entry.is_dir) continue;
      ++files;
      basenames.insert(Basename(entry));
    }
    std::vector<std::string> tokenizer;
    const auto note = [&](const std::string& name) {
      if (basenames.count(name) &&
          std::find(tokenizer.begin(), tokenizer.end(), name) == tokenizer.end()) {
        tokenizer.push_back(name);
      }
    };
    if (!options.required_files.empty()) {
      for (const std::string& name : options.required_files) {
        if (!basenames.count(name)) {
          return Invalid(
              absl::StrCat("required file ", absl::CHexEscape(name), " is not in the archive"));
        }
        note(name);
      }
    }
    for (const char* name : kKnownTokenizerFiles) note(name);
    if (options.required_files.empty() && tokenizer.empty()) {
      return Invalid(absl::StrCat(
          "no tokenizer file (",
          absl::StrJoin(std::begin(kKnownTokenizerFiles), std::end(kKnownTokenizerFiles), ", "),
          ") in the archive; the app needs one to run the model"));
    }
    // A Hugging Face config.json next to the package names the architecture (`model_type`).
    const auto config_it = listing.files.find("config.json");
    if (config_it != listing.files.end()) {
      MD_ASSIGN_OR_RETURN(google::protobuf::Value config,
                          ReadJson(archive.get(), *config_it->second, state));
      if (const std::string* model_type = StringField(config, "model_type")) {
        info.set_architecture(DisplayText(*model_type));
      }
    }

    absl::string_view name = package;
    absl::ConsumeSuffix(&name, is_mlpackage ? ".mlpackage" : ".mlmodelc");
    // The folder's name is raw zip bytes: any bytes but `/`, NUL and the C0 controls.
    info.set_name(DisplayText(name));
    info.set_container(is_mlpackage ? "mlpackage" : "mlmodelc");
    info.set_item_count(files);
    info.set_tokenizer(DisplayText(absl::StrJoin(tokenizer, ",")));
    return info;
  }();
  archive.reset();
  zip_error_fini(&state.error);
  return result;
}

}  // namespace modeldist::model_check

#include "common/flags.h"

#include <initializer_list>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Owns argv storage for Flags::Parse; argv[0] is the program name.
class Argv {
 public:
  Argv(std::initializer_list<std::string> args) : storage_(args) {
    storage_.insert(storage_.begin(), "prog");
    for (std::string& s : storage_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(storage_.size()); }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> pointers_;
};

Flags ServerFlags() {
  Flags flags;
  flags.Add("listen", "HOST:PORT", "127.0.0.1:8443", "address to serve on");
  flags.Add("chunk", "BYTES", "1MiB", "upload chunk size");
  flags.Add("root", "DIR", "", "data directory");
  flags.AddBool("verbose", "log every request");
  return flags;
}

TEST(FlagsTest, DefaultsWhenNothingIsGiven) {
  Flags flags = ServerFlags();
  Argv args({});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  EXPECT_EQ(flags.Get("listen"), "127.0.0.1:8443");
  EXPECT_FALSE(flags.IsSet("listen"));
  EXPECT_FALSE(flags.GetBool("verbose"));
  EXPECT_EQ(flags.Get("undeclared"), "");
  EXPECT_THAT(flags.positional(), IsEmpty());
}

TEST(FlagsTest, ValueAsNextArgumentOrAfterEquals) {
  Flags flags = ServerFlags();
  Argv args({"--listen", "0.0.0.0:1", "--root=/var/lib/md", "--chunk="});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  EXPECT_EQ(flags.Get("listen"), "0.0.0.0:1");
  EXPECT_EQ(flags.Get("root"), "/var/lib/md");
  EXPECT_TRUE(flags.IsSet("chunk"));
  EXPECT_EQ(flags.Get("chunk"), "");
}

TEST(FlagsTest, ValueMayContainEqualsAndLookLikeAFlag) {
  Flags flags = ServerFlags();
  Argv args({"--root=a=b", "--listen", "--verbose"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  EXPECT_EQ(flags.Get("root"), "a=b");
  EXPECT_EQ(flags.Get("listen"), "--verbose");  // a value flag always takes the next argument
  EXPECT_FALSE(flags.GetBool("verbose"));
}

TEST(FlagsTest, BoolFlags) {
  Flags flags = ServerFlags();
  Argv args({"--verbose"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  EXPECT_TRUE(flags.GetBool("verbose"));
  EXPECT_TRUE(flags.IsSet("verbose"));

  Flags off = ServerFlags();
  Argv off_args({"--verbose=false", "positional"});
  ASSERT_THAT(off.Parse(off_args.argc(), off_args.argv()), IsOk());
  EXPECT_FALSE(off.GetBool("verbose"));
  // A bool flag never swallows the next argument.
  EXPECT_THAT(off.positional(), ElementsAre("positional"));
}

TEST(FlagsTest, PositionalsAndDoubleDash) {
  Flags flags = ServerFlags();
  Argv args({"upload", "--verbose", "-x", "file", "--", "--listen", "-", "--"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  EXPECT_TRUE(flags.GetBool("verbose"));
  EXPECT_FALSE(flags.IsSet("listen"));
  EXPECT_THAT(flags.positional(), ElementsAre("upload", "-x", "file", "--listen", "-", "--"));
}

TEST(FlagsTest, ParseFromFirst) {
  Flags flags = ServerFlags();
  Argv args({"serve", "--verbose"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv(), /*first=*/2), IsOk());
  EXPECT_TRUE(flags.GetBool("verbose"));
  EXPECT_THAT(flags.positional(), IsEmpty());
}

TEST(FlagsTest, UnknownFlagIsAnErrorNamingIt) {
  Flags flags = ServerFlags();
  Argv args({"--listne", "x"});
  EXPECT_THAT(flags.Parse(args.argc(), args.argv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("--listne"), HasSubstr("--help"))));
  Flags with_value = ServerFlags();
  Argv eq_args({"--nope=1"});
  EXPECT_THAT(with_value.Parse(eq_args.argc(), eq_args.argv()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--nope")));
}

TEST(FlagsTest, MissingValueIsAnError) {
  Flags flags = ServerFlags();
  Argv args({"--verbose", "--listen"});
  EXPECT_THAT(flags.Parse(args.argc(), args.argv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("--listen"), HasSubstr("HOST:PORT"))));
}

TEST(FlagsTest, GetInt) {
  Flags flags = ServerFlags();
  Argv args({"--chunk", "4MiB", "--root", "12x"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  auto chunk = flags.GetInt("chunk");
  ASSERT_THAT(chunk, IsOk());
  EXPECT_EQ(*chunk, 4 << 20);
  EXPECT_THAT(flags.GetInt("root"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--root")));

  Flags defaults = ServerFlags();
  Argv none({});
  ASSERT_THAT(defaults.Parse(none.argc(), none.argv()), IsOk());
  auto default_chunk = defaults.GetInt("chunk");
  ASSERT_THAT(default_chunk, IsOk());
  EXPECT_EQ(*default_chunk, 1 << 20);
}

TEST(FlagsTest, HelpListsEveryFlagInOrder) {
  std::string help = ServerFlags().Help();
  EXPECT_THAT(help, HasSubstr("--listen HOST:PORT"));
  EXPECT_THAT(help, HasSubstr("(default: 127.0.0.1:8443)"));
  EXPECT_THAT(help, HasSubstr("--verbose"));
  EXPECT_LT(help.find("--listen"), help.find("--chunk"));
  EXPECT_LT(help.find("--root"), help.find("--verbose"));
}

// A config file in a scratch directory holding `text`.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    MD_EXPECT_OK(WriteFileAtomically(path(), text, 0644));
  }
  std::string path() const { return dir_.Join("server.conf"); }

 private:
  testing::ScratchDir dir_;
};

TEST(FlagsFileTest, BothSyntaxesCommentsAndBlankLines) {
  ConfigFile file(
      "# modeldist\n"
      "\n"
      "listen = 0.0.0.0:9000\n"
      "  root   /var/lib/md dir  \n"
      "chunk=2MiB\n"
      "   # indented comment\n"
      "verbose true\n");
  Flags flags = ServerFlags();
  Argv args({});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  ASSERT_THAT(flags.ParseFile(file.path()), IsOk());
  EXPECT_EQ(flags.Get("listen"), "0.0.0.0:9000");
  EXPECT_EQ(flags.Get("root"), "/var/lib/md dir");  // the rest of the line, trimmed
  EXPECT_EQ(*flags.GetInt("chunk"), 2 << 20);
  EXPECT_TRUE(flags.GetBool("verbose"));
}

TEST(FlagsFileTest, CommandLineOverridesTheFile) {
  ConfigFile file("listen = 0.0.0.0:9000\nroot /srv\nverbose = true\n");
  Flags flags = ServerFlags();
  Argv args({"--listen", "127.0.0.1:0", "--verbose=false"});
  ASSERT_THAT(flags.Parse(args.argc(), args.argv()), IsOk());
  ASSERT_THAT(flags.ParseFile(file.path()), IsOk());
  EXPECT_EQ(flags.Get("listen"), "127.0.0.1:0");
  EXPECT_FALSE(flags.GetBool("verbose"));
  EXPECT_EQ(flags.Get("root"), "/srv");
  EXPECT_EQ(flags.Get("chunk"), "1MiB");  // neither: the default
}

TEST(FlagsFileTest, FalseTurnsABoolOff) {
  ConfigFile file("verbose = false\n");
  Flags flags = ServerFlags();
  ASSERT_THAT(flags.ParseFile(file.path()), IsOk());
  EXPECT_FALSE(flags.GetBool("verbose"));
}

TEST(FlagsFileTest, MistakesNameTheFileAndLine) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"listen = x\n\nlisten-address = y\n", "unknown option \"listen-address\""},
           Case{"--listen = x\n", "unknown option \"--listen\""},
           Case{"# a\nlisten x\nroot y\nlisten z\n", "\"listen\" is set twice"},
           Case{"root\n", "\"root\" needs a value (DIR)"},
           Case{"root =  \n", "\"root\" needs a value (DIR)"},
           Case{"verbose\n", "\"verbose\" takes true or false"},
           Case{"verbose = yes\n", "\"verbose\" takes true or false, not \"yes\""},
       }) {
    SCOPED_TRACE(c.text);
    ConfigFile file(c.text);
    Flags flags = ServerFlags();
    absl::Status s = flags.ParseFile(file.path());
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                            ::testing::AllOf(HasSubstr(file.path() + ":"), HasSubstr(c.message))));
    EXPECT_EQ(ErrorReason(s), "INVALID_CONFIG_FILE");
  }
  ConfigFile file("# ok\nlisten x\n\nnope 1\n");
  Flags flags = ServerFlags();
  EXPECT_THAT(flags.ParseFile(file.path()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("server.conf:4: ")));
}

TEST(FlagsFileTest, RefusedNamesAreUnknown) {
  ConfigFile file("verbose = true\n");
  Flags flags = ServerFlags();
  EXPECT_THAT(flags.ParseFile(file.path(), {"verbose"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown option")));
}

TEST(FlagsFileTest, AMissingFileIsAnErrorNamingIt) {
  testing::ScratchDir dir;
  Flags flags = ServerFlags();
  absl::Status s = flags.ParseFile(dir.Join("absent.conf"));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("absent.conf")));
  EXPECT_EQ(ErrorReason(s), "INVALID_CONFIG_FILE");
}

TEST(ParseSizeTest, PlainNumbersAndBinarySuffixes) {
  struct Case {
    const char* text;
    int64_t want;
  };
  for (const Case& c :
       {Case{"0", 0}, Case{"123", 123}, Case{"2k", 2048}, Case{"3K", 3072}, Case{"3KiB", 3072},
        Case{"4MiB", 4 << 20}, Case{"4m", 4 << 20}, Case{"1G", 1LL << 30}, Case{"2gib", 2LL << 30},
        Case{"8589934592", 8LL << 30}}) {
    SCOPED_TRACE(c.text);
    auto v = ParseSize(c.text);
    ASSERT_THAT(v, IsOk());
    EXPECT_EQ(*v, c.want);
  }
}

TEST(ParseSizeTest, RejectsNonNumbers) {
  for (const char* text : {"", "abc", "MiB", "1.5G", "1KB", "1T", "0x10", "1MiBx"}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ParseSize(text), StatusIs(absl::StatusCode::kInvalidArgument, _));
  }
}

TEST(ParseSizeTest, RejectsOverflow) {
  // 2^63 / 2^30 = 2^33; one more gibibyte does not fit in int64.
  EXPECT_THAT(ParseSize("8589934592G"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(ParseSize("99999999999999999999"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  auto max = ParseSize("8589934591G");
  ASSERT_THAT(max, IsOk());
  EXPECT_EQ(*max, 8589934591LL << 30);
}

}  // namespace
}  // namespace modeldist

#include "common/command_line.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "common/cpu_tier.h"
#include "common/max_isa_flag.h"
#include "generated/build_info.h"

namespace moe {

const char* MoeVersion() { return MOE_VERSION; }
const char* MoeGitCommit() { return MOE_GIT_COMMIT; }

std::string VersionLine(const std::string& program) {
  const dnnl_version_t* v = dnnl_version();
  return absl::StrCat(program, " ", MoeVersion(), " (git ", MoeGitCommit(), "), oneDNN ", v->major,
                      ".", v->minor, ".", v->patch, ", CPU tier ", CpuTierDescription());
}

namespace {

// Every flag the program links, grouped by the file that defines it (the
// program's own files first, abseil's last), with its help and default.
void PrintHelp(const std::string& program, const char* usage) {
  std::map<std::pair<bool, std::string>, std::map<std::string, const absl::CommandLineFlag*>>
      by_file;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired()) continue;
    std::string file = flag->Filename();
    // Paths relative to the source tree (abseil drops the leading '/').
    for (std::string root : {std::string(MOE_SOURCE_DIR) + "/", std::string("./")}) {
      if (!root.empty() && root[0] == '/') root = root.substr(1);
      if (file.rfind(root, 0) == 0) file = file.substr(root.size());
      if (file.rfind("/" + root, 0) == 0) file = file.substr(root.size() + 1);
    }
    const bool absl_own = file.find("absl/") != std::string::npos;
    by_file[{absl_own, file}][std::string(name)] = flag;
  }
  std::printf("%s: %s\n", program.c_str(), usage);
  for (const auto& [key, flags] : by_file) {
    std::printf("\n  Flags from %s:\n", key.second.c_str());
    for (const auto& [name, flag] : flags) {
      std::printf("    --%s (%s); default: %s;\n", name.c_str(), flag->Help().c_str(),
                  flag->DefaultValue().c_str());
    }
  }
}

bool IsHelpFlag(const char* arg) {
  for (const char* h :
       {"--help", "-help", "--helpfull", "-helpfull", "--helpshort", "-helpshort"}) {
    if (std::strcmp(arg, h) == 0) return true;
  }
  return false;
}

}  // namespace

std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const char* usage) {
  const std::string program = absl::StrCat(argv[0]).substr(absl::StrCat(argv[0]).rfind('/') + 1);
  absl::FlagsUsageConfig config;
  // abseil lists only the flags of a file named after the program by
  // default; every flag a moe-serve program links is one of its own.
  config.contains_helpshort_flags = [](absl::string_view) { return true; };
  config.contains_help_flags = [](absl::string_view) { return true; };
  config.version_string = [program] { return VersionLine(program) + "\n"; };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  // abseil's --help exits 1; ours lists every flag and exits 0.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) break;
    if (IsHelpFlag(argv[i])) {
      PrintHelp(program, usage);
      std::exit(0);
    }
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  ApplyMaxIsaFlagOrExit(argv[0]);
  return args;
}

}  // namespace moe

// The command line of every moe-serve program, parsed one way:
//   --help, --helpfull  every flag with its meaning and default, grouped by
//                       the file that defines it, then exit 0;
//   --version           program, version, git commit, oneDNN version and
//                       CPU tier, then exit 0;
//   --max_isa           applied (max_isa_flag.h) before the program runs.
#ifndef MOE_COMMON_COMMAND_LINE_H_
#define MOE_COMMON_COMMAND_LINE_H_

#include <string>
#include <vector>

namespace moe {

// Parses argv (exiting for --help, --version or a bad flag), applies
// --max_isa (exiting 2 on a bad value or CPU) and returns the positional
// arguments, argv[0] first. `usage` is the program's one-paragraph
// description, shown first by --help.
std::vector<char*> ParseCommandLineOrExit(int argc, char** argv, const char* usage);

// "0.1.0"
const char* MoeVersion();
// "3f2a9c0d1e2b" (12 hex digits, "-dirty" with uncommitted changes, or
// "unknown" when built without git metadata).
const char* MoeGitCommit();

// "<program> 0.1.0 (git 3f2a9c0d1e2b), oneDNN 2.6.3, CPU tier avx2 (...)"
std::string VersionLine(const std::string& program);

}  // namespace moe

#endif  // MOE_COMMON_COMMAND_LINE_H_

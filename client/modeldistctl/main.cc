// modeldistctl: the admin CLI of a modeldist server. See commands.h and `modeldistctl --help`.
#include <string>
#include <vector>

#include "client/modeldistctl/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return modeldist::ctl::RunCtl(args, modeldist::ctl::ProcessConsole());
}

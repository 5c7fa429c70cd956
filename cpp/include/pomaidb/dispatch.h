// Which KernelTable runs: the best level the CPU *and* the operating system support, chosen once
// on first use, lowerable at runtime (POMAIDB_ISA, tests running every level).
#pragma once

#include <string>
#include <vector>

#include "pomaidb/kernels.h"

namespace pomai {

// The table every kernel call uses.  Callers read it once per call, so a concurrent
// set_active_isa() affects later calls only.
const KernelTable& active_kernels();

// Names of the levels this machine can run, lowest first; "scalar" is always there.
std::vector<std::string> supported_isas();

// Makes the level called `name` active.  Returns false and changes nothing when the name is
// unknown or the machine cannot run that level.
bool set_active_isa(const std::string& name);

}  // namespace pomai

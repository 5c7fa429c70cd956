// Level selection.  A level is usable only when CPUID reports every instruction its source file
// is compiled for *and* XGETBV shows the OS saves the registers it uses: a kernel with AVX-512
// under an OS that does not context-switch ZMM state would silently corrupt other threads.
#include "pomaidb/dispatch.h"

#include <atomic>
#include <cstdint>

#if defined(POMAIDB_X86_LEVELS)
#include <cpuid.h>
#endif

namespace pomai {
namespace {

constexpr KernelTable kScalar{"scalar", scalar::dot_tile, scalar::l2sq_tile, scalar::dot_i8_rows,
                              scalar::dot_i4_rows, scalar::hamming64, scalar::hamming_rows,
                              scalar::crc32c};

#if defined(POMAIDB_X86_LEVELS)

constexpr KernelTable kAvx2{"avx2", avx2::dot_tile, avx2::l2sq_tile, avx2::dot_i8_rows,
                            avx2::dot_i4_rows, avx2::hamming64, avx2::hamming_rows, avx2::crc32c};
// Hamming and CRC32C come from the AVX2 level (see kernels.h).
constexpr KernelTable kAvx512{"avx512", avx512::dot_tile, avx512::l2sq_tile, avx512::dot_i8_rows,
                              avx512::dot_i4_rows, avx2::hamming64, avx2::hamming_rows,
                              avx2::crc32c};
constexpr KernelTable kAvx512Vnni{"avx512vnni", avx512::dot_tile, avx512::l2sq_tile,
                                  avx512::dot_i8_rows_vnni, avx512::dot_i4_rows_vnni,
                                  avx2::hamming64, avx2::hamming_rows, avx2::crc32c};

// XCR0 bits: 1 SSE (XMM), 2 AVX (upper YMM), 5 opmask, 6 upper ZMM0-15, 7 ZMM16-31.
constexpr std::uint64_t kXcr0Avx = (1u << 1) | (1u << 2);
constexpr std::uint64_t kXcr0Avx512 = kXcr0Avx | (1u << 5) | (1u << 6) | (1u << 7);

std::uint64_t read_xcr0() {
  std::uint32_t eax = 0;
  std::uint32_t edx = 0;
  // The xgetbv mnemonic rather than _xgetbv(): this file is built for the baseline ISA.
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

struct Levels {
  bool avx2 = false;
  bool avx512 = false;
  bool avx512vnni = false;
};

// Mirrors the -m flags of kernels_avx2.cc and kernels_avx512.cc in CMakeLists.txt (and the
// target attribute of the VNNI kernel there).
Levels detect_levels() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return {};
  const bool leaf1_ok = (ecx & bit_SSE4_2) && (ecx & bit_POPCNT) && (ecx & bit_FMA) &&
                        (ecx & bit_AVX) && (ecx & bit_OSXSAVE);
  if (!leaf1_ok) return {};
  const std::uint64_t xcr0 = read_xcr0();
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return {};
  Levels levels;
  levels.avx2 = (ebx & bit_AVX2) && (xcr0 & kXcr0Avx) == kXcr0Avx;
  levels.avx512 = levels.avx2 && (ebx & bit_AVX512F) && (ebx & bit_AVX512DQ) &&
                  (ebx & bit_AVX512BW) && (ebx & bit_AVX512VL) &&
                  (xcr0 & kXcr0Avx512) == kXcr0Avx512;
  levels.avx512vnni = levels.avx512 && (ecx & bit_AVX512VNNI);
  return levels;
}

const Levels& machine_levels() {
  static const Levels levels = detect_levels();
  return levels;
}

#endif  // POMAIDB_X86_LEVELS; elsewhere (aarch64) the build has the scalar level only.

// Supported levels, lowest first.
std::vector<const KernelTable*> supported_tables() {
  std::vector<const KernelTable*> tables{&kScalar};
#if defined(POMAIDB_X86_LEVELS)
  if (machine_levels().avx2) tables.push_back(&kAvx2);
  if (machine_levels().avx512) tables.push_back(&kAvx512);
  if (machine_levels().avx512vnni) tables.push_back(&kAvx512Vnni);
#endif
  return tables;
}

const KernelTable* find_supported(const std::string& name) {
  for (const KernelTable* table : supported_tables()) {
    if (name == table->name) return table;
  }
  return nullptr;
}

std::atomic<const KernelTable*>& active_slot() {
  static std::atomic<const KernelTable*> slot{supported_tables().back()};
  return slot;
}

}  // namespace

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const KernelTable* table : supported_tables()) names.emplace_back(table->name);
  return names;
}

bool set_active_isa(const std::string& name) {
  const KernelTable* table = find_supported(name);
  if (table == nullptr) return false;
  active_slot().store(table, std::memory_order_release);
  return true;
}

}  // namespace pomai

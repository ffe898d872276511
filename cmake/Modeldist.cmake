# The project's CMake helpers: every component folder is one library made by
# modeldist_library, so each gets the same include root, warnings and alias.

# Warnings for the project's own code. Generated protobuf/gRPC code gets none of these
# (see proto/CMakeLists.txt), because we do not own it. -Wno-missing-field-initializers: a
# designated initializer ({.target = t}) names the fields it sets and leaves the rest at their
# defaults on purpose; GCC 12 warns about it anyway (GCC 13 no longer does).
function(modeldist_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor -Wno-unused-parameter
                                           -Wno-missing-field-initializers)
  if(MODELDIST_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# modeldist_library(<target> SRCS <files>... [PUBLIC <deps>...] [PRIVATE <deps>...])
#
# A static library whose headers are included from the project root ("storage/catalog.h"),
# with the project's warnings, and an alias modeldist::<name without the modeldist_ prefix>
# (modeldist_storage -> modeldist::storage) so a misspelt dependency fails at configure time
# instead of being passed to the linker as a plain library name.
function(modeldist_library target)
  cmake_parse_arguments(L "" "" "SRCS;PUBLIC;PRIVATE" ${ARGN})
  add_library(${target} STATIC ${L_SRCS})
  string(REGEX REPLACE "^modeldist_" "" alias ${target})
  add_library(modeldist::${alias} ALIAS ${target})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC ${L_PUBLIC} PRIVATE ${L_PRIVATE})
  modeldist_warnings(${target})
endfunction()

# modeldist_executable(<target> SRCS <files>... [DEPS <deps>...])
function(modeldist_executable target)
  cmake_parse_arguments(E "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${target} ${E_SRCS})
  target_link_libraries(${target} PRIVATE ${E_DEPS})
  modeldist_warnings(${target})
endfunction()

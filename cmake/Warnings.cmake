# Warnings for the project's own code. Generated protobuf/gRPC code gets none of these
# (see proto/CMakeLists.txt), because we do not own it.
function(modeldist_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor -Wno-unused-parameter)
  if(MODELDIST_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

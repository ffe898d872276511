# ASan + UBSan for the whole build when MODELDIST_SANITIZE is on. UBSan aborts on the first
# finding so that ctest sees a failure instead of a log line.
if(MODELDIST_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

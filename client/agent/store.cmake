# client/agent store: the on-device model layout and its atomic activation (model_store.h),
# with safe extraction of CoreML zips (unzip.h). Included from client/agent/CMakeLists.txt.
find_package(PkgConfig REQUIRED)
# GLOBAL so that tests (another directory) can build hostile zips with the same libzip.
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET GLOBAL libzip)

add_library(modeldist_agent_store STATIC
  ${CMAKE_CURRENT_LIST_DIR}/model_store.cc
  ${CMAKE_CURRENT_LIST_DIR}/unzip.cc)
target_include_directories(modeldist_agent_store PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(modeldist_agent_store
  PUBLIC modeldist_common modeldist_proto absl::status absl::statusor
  PRIVATE absl::strings PkgConfig::LIBZIP)
modeldist_warnings(modeldist_agent_store)

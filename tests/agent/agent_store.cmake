# ModelStore activation, rollback, garbage collection, crash leftovers, and hostile zips built
# at test time with libzip. Included from tests/agent/CMakeLists.txt.
modeldist_test(model_store_test SRCS ${CMAKE_CURRENT_LIST_DIR}/model_store_test.cc
               DEPS modeldist_agent_store PkgConfig::LIBZIP)

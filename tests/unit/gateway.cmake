# Unit tests of the gateway's hub and recovery (LABELS unit), include()d from
# tests/unit/CMakeLists.txt after pg_common_tm is defined.
#
# Each test links the real gateway/hub.c (and recovery.c) with stand-ins of
# its own for what those call below them (pg_conn_send, the command and
# subscriber links, pg_node), so no lws context, loop or Redis is needed:
# libwebsockets only for lws_dll2, libuv only for node.h's headers. Like
# pg_common_tm, the gateway files are compiled with test_alloc.h forced in,
# so cmocka fails a case that leaks a channel, a membership or a recovery.
# Running cmake's pkg_check_modules again here is needed: the imported
# targets made in gateway/ are not visible in this directory.
if(NOT TARGET pg_common_tm)
  message(FATAL_ERROR "tests/unit/gateway.cmake: include() it after pg_common_tm is defined")
endif()
if(NOT TARGET PkgConfig::LWS)
  pkg_check_modules(LWS REQUIRED IMPORTED_TARGET libwebsockets)
endif()
if(NOT TARGET PkgConfig::UV)
  pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv)
endif()

set(PG_GW_DIR ${PROJECT_SOURCE_DIR}/gateway)
set(PG_GW_UNIT_hub hub.c)
set(PG_GW_UNIT_recovery hub.c recovery.c)
foreach(m hub recovery)
  list(TRANSFORM PG_GW_UNIT_${m} PREPEND ${PG_GW_DIR}/)
  add_executable(test_${m} ${CMAKE_CURRENT_LIST_DIR}/test_${m}.c ${PG_GW_UNIT_${m}})
  target_compile_options(test_${m} PRIVATE -include ${CMAKE_CURRENT_LIST_DIR}/test_alloc.h)
  target_include_directories(test_${m} PRIVATE ${PG_GW_DIR})
  target_link_libraries(test_${m} PRIVATE pg_common_tm PkgConfig::CMOCKA PkgConfig::LWS PkgConfig::UV)
  add_test(NAME unit_${m} COMMAND test_${m})
  set_tests_properties(unit_${m} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()

# gateway/httpchunk.c: the relay's chunked body scanner (pure, no lws)
add_executable(test_chunk ${CMAKE_CURRENT_LIST_DIR}/test_chunk.c ${PG_GW_DIR}/httpchunk.c)
target_compile_options(test_chunk PRIVATE -include ${CMAKE_CURRENT_LIST_DIR}/test_alloc.h)
target_include_directories(test_chunk PRIVATE ${PG_GW_DIR})
target_link_libraries(test_chunk PRIVATE pg_common_tm PkgConfig::CMOCKA)
add_test(NAME unit_chunk COMMAND test_chunk)
set_tests_properties(unit_chunk PROPERTIES LABELS unit TIMEOUT 60)

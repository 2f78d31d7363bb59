/* Entry points of the tools that make up the multi-call `qvm` program. Each lives in
 * its own qvm_*.c file; main.c picks one by the name the program was called by. */
#pragma once

int qvm_ls_main(int argc, char **argv);
int qvm_create_main(int argc, char **argv);
int qvm_prefs_main(int argc, char **argv);
int qubes_prefs_main(int argc, char **argv);
int qvm_remove_main(int argc, char **argv);
int qvm_clone_main(int argc, char **argv);
int qvm_tags_main(int argc, char **argv);
int qvm_device_main(int argc, char **argv);
int qvm_features_main(int argc, char **argv);
int qvm_service_main(int argc, char **argv);
int qvm_check_main(int argc, char **argv);
int qvm_firewall_main(int argc, char **argv);
int qvm_volume_main(int argc, char **argv);
int qvm_pool_main(int argc, char **argv);
int qvm_label_main(int argc, char **argv);
int qvm_start_main(int argc, char **argv);
int qvm_shutdown_main(int argc, char **argv);
int qvm_kill_main(int argc, char **argv);
int qvm_pause_main(int argc, char **argv);
int qvm_unpause_main(int argc, char **argv);

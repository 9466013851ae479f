# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tcpb_global_optspecs
    string join \n h/help V/version
end

function __fish_tcpb_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tcpb_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tcpb_using_subcommand
    set -l cmd (__fish_tcpb_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tcpb -n "__fish_tcpb_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcpb -n "__fish_tcpb_needs_command" -s V -l version -d 'Print version'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "status" -d 'Show the broker, the farm, slots in use and the queue'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "top" -d 'The live view: hosts, the files compiling on each, the queue, the rate'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "stop" -d 'Stop the broker; returns once it has exited, its compiles finished'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "host" -d 'Change the farm at run time; kept across broker restarts'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "reload" -d 'Re-read config.toml and apply it (as SIGHUP does)'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "broker" -d 'Run the broker in the foreground (it starts itself on first use)'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell)'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "init" -d 'Print shell start-up lines: eval "$(tcpb init bash)" in ~/.bashrc'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "masquerade" -d 'Manage the masquerade directory: links to tcpb named like compilers'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "man" -d 'Print the manual page (roff): tcpb man | man -l -'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "log" -d 'Show the broker\'s log (broker.log in the state directory)'
complete -c tcpb -n "__fish_tcpb_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand status" -l interval -d 'Seconds between redraws of --watch' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand status" -l json -d 'Print one JSON object instead of a table'
complete -c tcpb -n "__fish_tcpb_using_subcommand status" -s w -l watch -d 'A live view, redrawn in place until Ctrl-C (as `tcpb top`)'
complete -c tcpb -n "__fish_tcpb_using_subcommand status" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand top" -l interval -d 'Seconds between redraws' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand top" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand stop" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "add" -d 'Add a host: HOST[:PORT][/SLOTS][,lzo][,cpp]'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "remove" -d 'Remove a host: no new jobs; running ones finish'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "drain" -d 'No new jobs; running ones finish; the host stays listed'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "enable" -d 'Take jobs again after drain or disable'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "disable" -d 'No jobs until enabled'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "set" -d 'Change a host\'s slots and/or speed'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "reset" -d 'Drop every runtime change: back to the configured farm'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and not __fish_seen_subcommand_from add remove drain enable disable set reset help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from add" -l speed -d 'Relative speed (default 1.0)' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from add" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from remove" -l force -d 'End its running jobs now (distcc compiles them locally)'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from remove" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from drain" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from drain" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from enable" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from disable" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from set" -l slots -d 'Concurrent jobs' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from set" -l speed -d 'Relative speed' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from set" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from reset" -l team -d 'Change the team\'s farm in etcd (`[team]`): every broker of the team applies it within a second'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from reset" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a host: HOST[:PORT][/SLOTS][,lzo][,cpp]'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a host: no new jobs; running ones finish'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "drain" -d 'No new jobs; running ones finish; the host stays listed'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Take jobs again after drain or disable'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "disable" -d 'No jobs until enabled'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change a host\'s slots and/or speed'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "reset" -d 'Drop every runtime change: back to the configured farm'
complete -c tcpb -n "__fish_tcpb_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand reload" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand broker" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand init" -l dir -d 'The masquerade directory [default: ~/.local/share/tcpb/masquerade]' -r -F
complete -c tcpb -n "__fish_tcpb_using_subcommand init" -l cc -d 'Also set CC="tcpb gcc" and CXX="tcpb g++"'
complete -c tcpb -n "__fish_tcpb_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and not __fish_seen_subcommand_from install uninstall help" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and not __fish_seen_subcommand_from install uninstall help" -f -a "install" -d 'Link gcc, g++, cc, c++, clang, clang++ (and versioned names) found on PATH to tcpb, in DIR [default: ~/.local/share/tcpb/masquerade]'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and not __fish_seen_subcommand_from install uninstall help" -f -a "uninstall" -d 'Remove the links to tcpb from DIR [default: ~/.local/share/tcpb/masquerade], and DIR itself once empty; any other file is left alone'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and not __fish_seen_subcommand_from install uninstall help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and __fish_seen_subcommand_from help" -f -a "install" -d 'Link gcc, g++, cc, c++, clang, clang++ (and versioned names) found on PATH to tcpb, in DIR [default: ~/.local/share/tcpb/masquerade]'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Remove the links to tcpb from DIR [default: ~/.local/share/tcpb/masquerade], and DIR itself once empty; any other file is left alone'
complete -c tcpb -n "__fish_tcpb_using_subcommand masquerade; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand man" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand log" -s n -l lines -d 'How many of the last lines to show' -r
complete -c tcpb -n "__fish_tcpb_using_subcommand log" -s f -l follow -d 'Keep printing what the broker writes, until interrupted'
complete -c tcpb -n "__fish_tcpb_using_subcommand log" -s h -l help -d 'Print help'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "status" -d 'Show the broker, the farm, slots in use and the queue'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "top" -d 'The live view: hosts, the files compiling on each, the queue, the rate'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "stop" -d 'Stop the broker; returns once it has exited, its compiles finished'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "host" -d 'Change the farm at run time; kept across broker restarts'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "reload" -d 'Re-read config.toml and apply it (as SIGHUP does)'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "broker" -d 'Run the broker in the foreground (it starts itself on first use)'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish, elvish, powershell)'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "init" -d 'Print shell start-up lines: eval "$(tcpb init bash)" in ~/.bashrc'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "masquerade" -d 'Manage the masquerade directory: links to tcpb named like compilers'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "man" -d 'Print the manual page (roff): tcpb man | man -l -'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "log" -d 'Show the broker\'s log (broker.log in the state directory)'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and not __fish_seen_subcommand_from status top stop host reload broker completions init masquerade man log help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "add" -d 'Add a host: HOST[:PORT][/SLOTS][,lzo][,cpp]'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "remove" -d 'Remove a host: no new jobs; running ones finish'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "drain" -d 'No new jobs; running ones finish; the host stays listed'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "enable" -d 'Take jobs again after drain or disable'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "disable" -d 'No jobs until enabled'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "set" -d 'Change a host\'s slots and/or speed'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "reset" -d 'Drop every runtime change: back to the configured farm'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from masquerade" -f -a "install" -d 'Link gcc, g++, cc, c++, clang, clang++ (and versioned names) found on PATH to tcpb, in DIR [default: ~/.local/share/tcpb/masquerade]'
complete -c tcpb -n "__fish_tcpb_using_subcommand help; and __fish_seen_subcommand_from masquerade" -f -a "uninstall" -d 'Remove the links to tcpb from DIR [default: ~/.local/share/tcpb/masquerade], and DIR itself once empty; any other file is left alone'

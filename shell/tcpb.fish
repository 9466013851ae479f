# tcpb shell integration for fish: add to ~/.config/fish/config.fish
#   tcpb init fish | source           # masquerade directory on PATH
#   tcpb init fish --cc | source      # and CC/CXX set to tcpb
# No program runs at start-up beyond `tcpb init` itself.
set -l _tcpb_dir __TCPB_DIR__
set -l _tcpb_cc __TCPB_CC__
if test -d $_tcpb_dir; and not contains -- $_tcpb_dir $PATH
    set -gx PATH $_tcpb_dir $PATH
end
if test $_tcpb_cc = 1
    set -gx CC "tcpb gcc"
    set -gx CXX "tcpb g++"
end

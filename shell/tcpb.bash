# tcpb shell integration for bash: add to ~/.bashrc
#   eval "$(tcpb init bash)"          # masquerade directory on PATH
#   eval "$(tcpb init bash --cc)"     # and CC/CXX set to tcpb
# No program runs at start-up beyond `tcpb init` itself.
_tcpb_dir=__TCPB_DIR__
_tcpb_cc=__TCPB_CC__
if [ -d "$_tcpb_dir" ]; then
  case ":${PATH}:" in
    *":${_tcpb_dir}:"*) ;;
    *) PATH="${_tcpb_dir}${PATH:+:${PATH}}"; export PATH ;;
  esac
fi
if [ "$_tcpb_cc" = 1 ]; then
  CC="tcpb gcc"
  CXX="tcpb g++"
  export CC CXX
fi
unset _tcpb_dir _tcpb_cc

#!/bin/sh
# A command agent: pytest-programbench runs this on the host once per instance, while the
# instance's task container is up, and scores /workspace when it exits. Its environment:
#   PB_CONTAINER_ID  the task container (DOCKER_HOST names its engine)
#   PB_AGENT_USER    the user agents run as in it (`agent` in real task images)
#   PB_WORKSPACE     where the submission goes (/workspace)
#   PB_PROMPT_FILE   the task statement, a file on the host
#   PB_INSTANCE_ID   the instance
# Its output lands in <run>/<id>/agent.log; at --pb-agent-timeout its process group is killed.
set -eu

# Everything happens inside the container, as the agent user, in the workspace.
in_box() {
    docker exec -i -u "$PB_AGENT_USER" -w "$PB_WORKSPACE" "$PB_CONTAINER_ID" "$@"
}

echo "instance $PB_INSTANCE_ID, container $PB_CONTAINER_ID, user $PB_AGENT_USER"
echo "task: $(head -n 1 "$PB_PROMPT_FILE")"

# A real command agent starts an external CLI agent here and hands it the prompt, e.g. one
# that runs its shell commands through `docker exec`:
#     my-cli-agent --prompt-file "$PB_PROMPT_FILE" --shell "docker exec -i -u $PB_AGENT_USER \
#         -w $PB_WORKSPACE $PB_CONTAINER_ID bash -c"
# This one only knows the answer to the self-test task, so it writes that in.
case "$PB_INSTANCE_ID" in
    pbselftest__rpncalc.*) ;;
    *) echo "this example only solves the self-test task" >&2; exit 1 ;;
esac
# The reference source: RPNCALC_SOURCE, else the copy in this repository's images/selftest.
source_file=${RPNCALC_SOURCE:-$(dirname "$0")/../../images/selftest/rpncalc.c}

in_box sh -c 'cat > rpncalc.c' < "$source_file"
printf '#!/bin/sh\nset -e\ngcc -O2 -o executable rpncalc.c\n' | in_box sh -c 'cat > compile.sh && chmod +x compile.sh'
# Build once and try it, as an agent would before it stops.
in_box sh -c './compile.sh && ./executable 2 3 +'
echo "built and checked; submitting"
